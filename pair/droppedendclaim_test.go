package pair

import (
	"context"
	"testing"
	"time"
)

// TestDeleteAfterAResyncEndWasDroppedClaimsNoTime: a pair's resync copies
// what was written since its suspension at S0 and its end is captured;
// then the session suspends itself (link down with a full sidefile) and
// drops what the mover holds, the copy's end with it. The secondary never
// receives the end: its hold for the pair stays open. The pair keeps the
// end's stamp (CopyEnd) though, so resyncHeld takes its resync as ended:
// deleted now, it claims its copy consistent as of S0, while the secondary,
// told of a deletion during an open resync, stops holding and applies the
// held part of the resync over the S0 image: a mix, consistent as of no
// time.
func TestDeleteAfterAResyncEndWasDroppedClaimsNoTime(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.settle()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	s0 := r.pair("a").Since
	for i := range 40 {
		r.write("a", int64(i)*twinRegion, 4096)
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	// Part of the resync reaches the secondary (held there), the rest and
	// its end are captured and stay in the sidefile.
	r.mg.copyOne(context.Background())
	r.mv.journalHeld()
	for range 8 {
		r.mg.copyOne(context.Background())
	}
	if p := r.pair("a"); p.State != Pending || p.CopyEnd == 0 {
		t.Fatalf("setup: pair %+v, want its resync's end captured", p)
	}
	// The session suspends itself: what is held, the end included, is dropped.
	at := r.deleteOnceTheSessionDropsWhatIsHeld("a")
	if p := r.pair("a"); at.UnixNano() != 0 || p.Consistent != 0 {
		t.Fatalf("deleted with its resync's end dropped (so the secondary's hold for it still open), pair a reports its copy last consistent as of %d "+
			"and claims %d (suspended before the resync at %d): the secondary applies the held part of the resync over that image at the deletion",
			at.UnixNano(), p.Consistent, s0)
	}
}

// deleteOnceTheSessionDropsWhatIsHeld has the session suspend itself with
// the link down, which drops what the mover holds, deletes vol, and links
// again; it returns the deletion's time.
func (r *rig) deleteOnceTheSessionDropsWhatIsHeld(vol string) time.Time {
	r.t.Helper()
	r.mv.setConnected(false)
	r.mg.suspendSession(reasonLinkDown, false)
	if p := r.pair(vol); p.State != Suspended {
		r.t.Fatalf("setup: pair %+v, want it suspended by the session", p)
	}
	at, err := r.mg.Delete(vol)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mv.setConnected(true)
	r.mv.ship()
	r.mg.promote()
	return at
}
