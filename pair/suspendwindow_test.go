package pair

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"duplex/bitmap"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/volume"
)

// writeAfterSuspend is a subsystem where a write of the application lands
// right after a volume's suspension is marked: stamped after the marker,
// tracked in the bitmap, never shipped.
type writeAfterSuspend struct {
	*subsystem.Subsystem
	tm     *timer.Timer
	marker int64 // the suspension marker's timestamp
	after  int64 // a time of the timer after the write was stamped
}

func (s *writeAfterSuspend) SuspendMarked(vol string, bm *bitmap.Bitmap, m recordset.Marker) (int64, error) {
	ts, err := s.Subsystem.SuspendMarked(vol, bm, m)
	s.marker = ts
	if err == nil {
		// The application's write, concurrent with the operator's suspend.
		if werr := s.Subsystem.Write(context.Background(), vol, make([]byte, 4096), 0); werr != nil {
			return ts, werr
		}
		s.after = s.tm.Now()
	}
	return ts, err
}

// SuspendMarkedWithin is the operator's SuspendMarked: the same.
func (s *writeAfterSuspend) SuspendMarkedWithin(vol string, bm *bitmap.Bitmap, m recordset.Marker, _ time.Duration) (int64, error) {
	return s.SuspendMarked(vol, bm, m)
}

// openWriteAfterSuspend opens pair a, duplex, over a writeAfterSuspend
// subsystem and an idle mover whose secondary has everything captured.
func openWriteAfterSuspend(t *testing.T) (*Manager, *writeAfterSuspend, *idleMover) {
	t.Helper()
	dir := t.TempDir()
	const size = 1 << 20
	v, err := volume.Open(filepath.Join(dir, "a.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	tm := timer.New()
	ss := &writeAfterSuspend{Subsystem: subsystem.New("s1", tm, sidefile.New(64<<20), map[string]*volume.Volume{"a": v}, []string{"a"}), tm: tm}
	state := savePairs(t, dir, true, &Pair{Volume: "a", Subsystem: "s1", State: Duplex, Size: size})
	mv := &idleMover{}
	mg, err := Open(Options{Dir: state, Logger: slog.New(slog.DiscardHandler)}, mv, []Volume{{Name: "a", Subsystem: ss, Size: size}})
	if err != nil {
		t.Fatal(err)
	}
	mv.acked.Store(tm.Now()) // the secondary holds everything captured so far
	mg.promote()
	return mg, ss, mv
}

// claimsNoTimeAfterMarker checks, once the pair was suspended (how), that
// the secondary, having journaled the marker and moved on past the write's
// time, is not claimed consistent as of a time after the marker.
func (s *writeAfterSuspend) claimsNoTimeAfterMarker(t *testing.T, mg *Manager, mv *idleMover, how string) {
	t.Helper()
	if s.after == 0 {
		t.Fatal("setup: the write after the suspension's marker did not happen")
	}
	mv.acked.Store(s.tm.Now())
	mg.promote()
	p := mg.Pairs()[0]
	if p.Since > s.marker || p.Consistent > s.marker {
		t.Fatalf("pair a suspended %s with its marker at %d claims its secondary copy consistent as of %d (since %d), "+
			"but a write stamped after the marker, before %d, is on the primary volume only (tracked in the bitmap): "+
			"the claim covers a write the secondary never received", how, s.marker, p.Consistent, p.Since, s.after)
	}
}

// TestSuspendClaimsNoTimeAfterItsMarker: pair suspend stops capturing the
// volume's writes in the critical section that stamps its marker; a write
// of the application that comes next is stamped after the marker and goes
// to the bitmap only. The pair must claim its secondary copy consistent as
// of the marker at the latest, not as of a later stamp taken once the
// suspension returned: the primary volume at that later time holds the
// write, which the secondary never receives (until a resync).
func TestSuspendClaimsNoTimeAfterItsMarker(t *testing.T) {
	mg, ss, mv := openWriteAfterSuspend(t)
	if err := mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	ss.claimsNoTimeAfterMarker(t, mg, mv, "by pair suspend")
}
