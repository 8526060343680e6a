package pair

import (
	"context"
	"testing"
)

// resyncEnded suspends a and resumes it after writes, then copies until the
// end of its resync is captured, and returns that end's stamp. With hold
// set, another volume's resync holds the secondary from just after the
// first region of a's resync is applied; with inconsistent, a's resync is
// one the operator accepted as inconsistent.
func (r *rig) resyncEnded(hold, inconsistent bool) int64 {
	r.t.Helper()
	if err := r.mg.Suspend("a"); err != nil {
		r.t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	for i := range 40 {
		r.write("a", int64(i)*twinRegion, 4096)
	}
	resume := r.mg.Resume
	if inconsistent {
		resume = r.mg.ResumeInconsistent
	}
	if err := resume("a"); err != nil {
		r.t.Fatal(err)
	}
	r.mg.copyOne(context.Background())
	r.mv.ship()
	r.mg.promote()
	if hold {
		r.mv.hold()
	}
	for range 8 {
		r.mg.copyOne(context.Background())
	}
	p := r.pair("a")
	if p.State != Pending || p.CopyEnd == 0 {
		r.t.Fatalf("setup: pair %+v, want its resync's end captured", p)
	}
	return p.CopyEnd
}

// TestSessionSuspensionAfterAResyncEndedClaimsItsEnd: a pair's resync ends
// and the secondary acknowledges the end, which a resync of another volume
// holds unapplied there; the session then suspends itself. Once the hold
// ends, the secondary applies the resync and then the suspension: the pair
// must not go on claiming the time of its suspension before the resync,
// whose image the resync overwrote.
func TestSessionSuspensionAfterAResyncEndedClaimsItsEnd(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.settle()
	end := r.resyncEnded(true, false)
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); p.State != Duplex {
		t.Fatalf("setup: pair %+v, want it duplex with its end held unapplied", p)
	}
	r.mv.setConnected(false)
	r.mg.suspendSession(reasonLinkDown, false)
	r.mv.setConnected(true)
	r.mv.release()
	r.write("b", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); p.Consistent != 0 && p.Consistent < end {
		t.Fatalf("pair a, suspended by the session after its resync's end at %d was acknowledged, claims its secondary copy consistent as of %d once the secondary applied that end: "+
			"its image is the one the resync overwrote", end, p.Consistent)
	}
}

// TestSuspendAfterAnInconsistentResyncEndedUnderAHoldClaimsNoTime: a
// resync the operator accepted as inconsistent lands part-way over the
// secondary's copy, then a resync of another volume holds the secondary and
// the inconsistent resync's end is acknowledged but held unapplied. The
// pair, duplex by then, is suspended: while the hold lasts the secondary's
// copy is a mix of the old image and part of the resync, consistent as of
// no time, not as of the suspension before the resync.
func TestSuspendAfterAnInconsistentResyncEndedUnderAHoldClaimsNoTime(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.settle()
	end := r.resyncEnded(true, true)
	r.mv.ship()
	r.mg.promote()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.write("b", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); p.Consistent != 0 {
		t.Fatalf("pair a, suspended while the end of its inconsistent resync is held unapplied (part of it applied), claims its secondary copy consistent as of %d: "+
			"that copy is a mix, consistent as of no time", p.Consistent)
	}
	r.mv.release()
	r.write("b", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); p.Consistent != 0 && p.Consistent < end {
		t.Fatalf("pair a claims %d once its resync's end at %d and its suspension were applied", p.Consistent, end)
	}
}

// TestDeleteAfterAResyncEndLostInACrashClaimsNoTime: a pair is suspended
// after its resync's end is captured, and the primary stops (kill -9)
// before the end is shipped: the end dies in the sidefile, and the
// secondary's hold for the resync stays open. Deleted after the restart,
// the pair must claim no time: the secondary, told of a deletion during an
// open resync, applies the held part of it over the image the hold kept.
func TestDeleteAfterAResyncEndLostInACrashClaimsNoTime(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.settle()
	r.resyncEnded(false, false)
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	// What the sidefile holds, the resync's end with it, dies with the
	// process.
	r.ss.side.Drain()
	r.crash()
	r.mg.promote()
	at, err := r.mg.Delete("a")
	if err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); at.UnixNano() != 0 || p.Consistent != 0 {
		t.Fatalf("deleted after a restart lost its resync's end (so the secondary's hold for it still open), pair a reports its copy last consistent as of %d and claims %d: "+
			"the secondary applies the held part of the resync over that image at the deletion", at.UnixNano(), p.Consistent)
	}
}
