package pair

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/volume"
)

// TestSuspendAllClaimsNoTimeAfterItsMarkers: pair suspend --all over
// subsystems that cannot change together suspends one pair after another,
// each with its marker; a write of the application right after a pair's
// marker goes to its bitmap only. No pair may claim its secondary copy
// consistent as of a stamp taken after they were all suspended: the
// primary volume at that time holds the write, which the secondary never
// receives (until a resync).
func TestSuspendAllClaimsNoTimeAfterItsMarkers(t *testing.T) {
	dir := t.TempDir()
	const size = 1 << 20
	v, err := volume.Open(filepath.Join(dir, "a.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tm := timer.New()
	// Not a *subsystem.Subsystem: the pairs are suspended one by one.
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
	mv.acked.Store(tm.Now())
	mg.promote()

	if _, err := mg.SuspendAll(); err != nil {
		t.Fatal(err)
	}
	if ss.after == 0 {
		t.Fatal("setup: the write after the suspension's marker did not happen")
	}
	mv.acked.Store(tm.Now())
	mg.promote()
	p := mg.Pairs()[0]
	if p.Since > ss.marker || p.Consistent > ss.marker {
		t.Fatalf("pair a suspended by suspend --all with its marker at %d claims its secondary copy consistent as of %d (since %d), "+
			"but a write stamped after the marker, before %d, is on the primary volume only: the claim covers a write the secondary never received",
			ss.marker, p.Consistent, p.Since, ss.after)
	}
}
