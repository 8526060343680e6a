package pair

import (
	"testing"
)

// TestResumeOfAnInconsistentPairNeedsNoJournalRoom: a pair whose secondary
// copy is consistent as of no time (the secondary gave up the hold of its
// resync for lack of journal room, and said so) is resumed with a plain
// resync. The secondary holds nothing for it: a resync over a copy it
// holds inconsistent simply goes on (secondary.pairStates.step), so no
// other resync being open, the resume needs no journal room beyond the
// usual. Refusing it for room leaves the pair suspended for ever where the
// journal's free space stays short, and the session's own resume of it
// (auto-suspended) retries for ever.
func TestResumeOfAnInconsistentPairNeedsNoJournalRoom(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.settle()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	// The secondary names a as consistent as of no time.
	r.mv.mu.Lock()
	r.mv.inconsistent = []string{"a"}
	r.mv.mu.Unlock()
	r.write("b", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); !p.Inconsistent {
		t.Fatalf("setup: pair a %+v, want it inconsistent", p)
	}
	for i := range 64 {
		r.write("a", int64(i)*twinRegion, 4096)
	}
	r.mg.mu.Lock()
	need := r.mg.roomFor(64*twinRegion, 64)
	r.mg.mu.Unlock()
	free := uint64(need) / 4 // room for the usual, not for a hold of a's resync
	r.mg.mover = &roomMover{memMover: r.mv, free: free}

	if err := r.mg.Resume("a"); err != nil {
		t.Fatalf("resume of pair a, which the secondary holds consistent as of no time (so it holds nothing for its resync), "+
			"with %d bytes of journal free and no other resync open: %v", free, err)
	}
}

// TestResumeWithNothingChangedNeedsNoJournalRoom: a pair suspended with
// nothing written since is resumed. Its resync marker carries no bytes, and
// the secondary takes the copy as the primary's again at once, holding
// nothing (secondary.pairStates.step); the copy ends with the marker that
// follows. No other resync being open, the resume needs no journal room,
// yet checkRoom asks for the sidefiles' limits as if a hold began.
func TestResumeWithNothingChangedNeedsNoJournalRoom(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.settle()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	if bm := r.ss.Tracking("a"); bm == nil || bm.Count() != 0 {
		t.Fatalf("setup: pair a's bitmap %v, want it empty", bm)
	}
	r.mg.mu.Lock()
	need := r.mg.roomFor(0, 0)
	r.mg.mu.Unlock()
	free := uint64(need) / 2
	r.mg.mover = &roomMover{memMover: r.mv, free: free}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatalf("resume of pair a with nothing written while suspended (nothing to copy, nothing held at the secondary), "+
			"with %d bytes of journal free and no other resync open: %v", free, err)
	}
}
