package pair

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

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

// TestSuspendClaimsNoTimeAfterItsMarker: pair suspend stops capturing the
// volume's writes in the critical section that stamps its marker; a write
// of the application that comes next is stamped after the marker and goes
// to the bitmap only. The pair must claim its secondary copy consistent as
// of the marker at the latest, not as of a later stamp taken once the
// suspension returned: the primary volume at that later time holds the
// write, which the secondary never receives (until a resync).
func TestSuspendClaimsNoTimeAfterItsMarker(t *testing.T) {
	dir := t.TempDir()
	const size = 1 << 20
	v, err := volume.Open(filepath.Join(dir, "a.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tm := timer.New()
	ss := &writeAfterSuspend{Subsystem: subsystem.New("s1", tm, sidefile.New(64<<20), map[string]*volume.Volume{"a": v}, []string{"a"}), tm: tm}
	state := filepath.Join(dir, "pairs")
	os.MkdirAll(state, 0o755)
	b, _ := json.Marshal(persisted{Clean: true, Pairs: []*Pair{{Volume: "a", Subsystem: "s1", State: Duplex, Size: size}}})
	os.WriteFile(filepath.Join(state, "pairs.json"), b, 0o644)
	mv := &idleMover{}
	mg, err := Open(Options{Dir: state, Logger: slog.New(slog.DiscardHandler)}, mv, []Volume{{Name: "a", Subsystem: ss, Size: size}})
	if err != nil {
		t.Fatal(err)
	}
	mv.acked.Store(tm.Now()) // the secondary holds everything captured so far
	mg.promote()

	if err := mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	if ss.after == 0 {
		t.Fatal("setup: the write after the suspension's marker did not happen")
	}
	// The secondary journals the marker and moves on past the write's time.
	mv.acked.Store(tm.Now())
	mg.promote()
	p := mg.Pairs()[0]
	if p.Since > ss.marker || p.Consistent > ss.marker {
		t.Fatalf("pair a suspended with its marker at %d claims its secondary copy consistent as of %d (since %d), "+
			"but a write stamped after the marker, before %d, is on the primary volume only (tracked in the bitmap): "+
			"the claim covers a write the secondary never received", ss.marker, p.Consistent, p.Since, ss.after)
	}
}
