package pair

import (
	"testing"
)

// TestDeleteAfterARecoveryEndWasDroppedClaimsNoTime: a primary that did not
// stop cleanly copies the regions of its activity log as a resync before it
// serves I/O; the secondary journals the copies and holds them for the
// recovery's end. The session then suspends itself and drops what the mover
// holds, the end with it: the secondary's hold for the volume stays open.
// Deleted now, the pair must claim no time: the secondary, told of a
// deletion during an open resync, applies the held copies over the image
// the hold kept, a mix consistent as of no time.
func TestDeleteAfterARecoveryEndWasDroppedClaimsNoTime(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.settle()
	r.saveAndClean()
	r.write("a", 2*twinRegion, 4096)
	r.crash()
	if !r.recovers("a", 2*twinRegion) {
		t.Fatalf("setup: the written region is not recovered: %v", r.opts.Recovered)
	}
	// The recovery's copies are journaled, the group that ends it is not.
	r.mv.journalHeld()
	r.mg.promote()
	at := r.deleteOnceTheSessionDropsWhatIsHeld("a")
	if p := r.pair("a"); at.UnixNano() != 0 || p.Consistent != 0 {
		t.Fatalf("deleted with its crash recovery's end dropped (so the secondary's hold for it still open), pair a reports its copy last consistent as of %d "+
			"and claims %d: the secondary applies the held copies of the recovery over the image the hold kept at the deletion",
			at.UnixNano(), p.Consistent)
	}
}
