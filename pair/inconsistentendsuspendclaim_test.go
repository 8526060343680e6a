package pair

import (
	"context"
	"testing"
)

// TestSuspendAfterAnInconsistentResyncEndedClaimsTheSuspension: the
// operator resumes a pair accepting an inconsistent resync; the resync
// copies every region written while suspended and its end is captured;
// before the secondary acknowledges that end, the pair is suspended again. The secondary journals and applies the copy, its end (from
// which its copy of the volume is the primary's again: secondary.pairStates
// takes a copy's end as duplex, consistent) and then the suspension, and it
// reports the volume consistent as of its suspension. A copy of the pair
// has ended, which is all Pair.Inconsistent waits for ("it holds no
// consistent copy of the pair until a copy of it ends"), so once the
// secondary recovers past that end the pair must claim the suspension's
// time, as it does after a plain resync
// (TestSuspendOrDeleteAfterAResyncEndedClaimsItsEnd) and as FirstCopy is
// cleared for a first copy's end (firstEnds). It claims none for ever
// instead: promote clears Inconsistent only for a pending pair whose end is
// acknowledged, and the suspension took the pair out of pending.
func TestSuspendAfterAnInconsistentResyncEndedClaimsTheSuspension(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.settle()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	for i := range 40 { // written while suspended: in the bitmap only
		r.write("a", int64(i)*twinRegion, 4096)
	}
	if err := r.mg.ResumeInconsistent("a"); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		r.mg.copyOne(context.Background())
	}
	p := r.pair("a")
	if p.State != Pending || p.CopyEnd == 0 || !p.Inconsistent {
		t.Fatalf("setup: pair %+v, want its inconsistent resync's end captured", p)
	}
	end := p.CopyEnd
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	at := r.pair("a").AfterEnd
	// The secondary journals and applies the copy, its end and the
	// suspension, and moves on.
	r.write("b", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	r.mv.ship()
	r.mg.promote()
	p = r.pair("a")
	if p.Consistent == 0 {
		t.Fatalf("pair a, suspended (at %d) after its inconsistent resync's end at %d was captured, and the secondary acknowledged through %d: "+
			"claims its secondary copy consistent as of no time (inconsistent %v, since %d, end_at %d), though that copy ended and the secondary holds the volume as of the suspension",
			at, end, r.mv.Stats().Acked.Time, p.Inconsistent, p.Since, p.EndAt)
	}
}
