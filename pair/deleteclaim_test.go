package pair

import (
	"testing"
)

// TestDeleteClaimsTheTimeTheSecondaryCopyHolds: a duplex pair is deleted
// right after a write the secondary has not acknowledged yet. The write
// and the deletion marker after it ship, and the secondary holds the volume
// as of the deletion, the write included. Delete reports, and the pair goes
// on claiming, the time the secondary had acknowledged before the write:
// a time whose image the secondary copy no longer is (it holds a later
// write), even once the secondary acknowledged past the deletion.
func TestDeleteClaimsTheTimeTheSecondaryCopyHolds(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.settle()
	before := r.pair("a").Consistent
	r.write("a", 0, 4096)
	r.ss.mu.Lock()
	written := r.ss.clock // the write's stamp
	r.ss.mu.Unlock()
	at, err := r.mg.Delete("a")
	if err != nil {
		t.Fatal(err)
	}
	r.write("b", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); p.Consistent < written {
		t.Fatalf("pair a deleted after a write stamped %d reports its copy last consistent as of %d and claims %d once the secondary acknowledged "+
			"past the deletion (%d before the write): the secondary's copy holds that write, so it is not the primary's volume as of the time claimed",
			written, at.UnixNano(), p.Consistent, before)
	}
}
