package pair

import (
	"testing"
)

// TestSuspensionNotJournaledBeforeKillClaimsNoLaterThanTheSecondaryHolds: a
// pair suspended while writes to it were still in the sidefile (the link
// down, or just slow) claims its suspension time as the time its secondary
// copy is consistent as of. If the primary is killed before the secondary
// journaled those writes and the suspension, the secondary holds the volume
// only as of what it journaled before: the restarted primary announces the
// suspension again, and the secondary takes the volume as of its last group
// before that marker. The restarted primary must not go on claiming the
// suspension time, which names writes the secondary never got (they are in
// the bitmap now, for the resume to copy).
func TestSuspensionNotJournaledBeforeKillClaimsNoLaterThanTheSecondaryHolds(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a")
	r.settle()
	r.write("a", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	journaled := r.mv.Stats().Acked.Time
	if r.pair("a").Consistent == 0 {
		t.Fatalf("setup: pair %+v, want duplex with a consistency time", r.pair("a"))
	}

	// A write the secondary never gets, then the suspension, answered.
	r.write("a", 2*twinRegion, 4096)
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	claimed := r.pair("a").Consistent

	// kill -9: what the sidefile held is gone; the restarted primary's
	// mover hears from the secondary that it journaled through journaled.
	lost := r.loseSidefile()
	if len(lost) == 0 {
		t.Fatal("setup: nothing was held in the sidefile at the kill")
	}
	r.crash()
	r.mg.promote()
	if got := r.pair("a").Consistent; got > journaled {
		t.Fatalf("after the kill, suspended pair a claims its secondary copy is consistent as of %d (claimed %d at the suspension), "+
			"but the secondary journaled only through %d and never got the write at %d nor the suspension: it holds a as of %d at most",
			got, claimed, journaled, lost[0].Timestamp, journaled)
	}
}

// TestSuspensionLostAtAKillStaysUnclaimedAsTheSecondaryMovesOn: once the
// restarted primary's groups reach the secondary, its acknowledgements pass
// the time of the suspension that died in the sidefile; they speak of this
// run, and must not raise the claim back to that time.
func TestSuspensionLostAtAKillStaysUnclaimedAsTheSecondaryMovesOn(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.settle()
	r.write("a", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	journaled := r.mv.Stats().Acked.Time

	r.write("a", 2*twinRegion, 4096)
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	suspendedAt := r.pair("a").Since
	lost := r.loseSidefile()
	r.crash()
	r.mg.promote()
	for i := range 3 { // the restarted primary goes on with b
		r.write("b", int64(i)*twinRegion, 4096)
		r.mv.ship()
		r.mg.promote()
	}
	if acked := r.mv.Stats().Acked.Time; acked <= suspendedAt {
		t.Fatalf("setup: acknowledged through %d, want past the suspension at %d", acked, suspendedAt)
	}
	if got := r.pair("a").Consistent; got > journaled {
		t.Fatalf("with the secondary acknowledging the restarted primary's groups through %d, suspended pair a claims its secondary copy consistent as of %d: "+
			"the suspension at %d and the write at %d died in the sidefile, and the secondary holds a as of %d at most",
			r.mv.Stats().Acked.Time, got, suspendedAt, lost[0].Timestamp, journaled)
	}
	// Saved so, the next restart does not raise it either.
	if err := r.mg.Close(true); err != nil {
		t.Fatal(err)
	}
	r.open()
	r.mv.ship()
	r.mg.promote()
	if got := r.pair("a").Consistent; got > journaled {
		t.Fatalf("after a clean restart, suspended pair a claims its secondary copy consistent as of %d: it holds a as of %d at most", got, journaled)
	}
}

// TestSuspensionClaimedOnceAcknowledged: a suspension answered while the
// writes before it are still in the sidefile claims no further than the
// secondary acknowledged, and its own time once the secondary has it.
func TestSuspensionClaimedOnceAcknowledged(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a")
	r.settle()
	r.write("a", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	journaled := r.mv.Stats().Acked.Time
	r.write("a", 2*twinRegion, 4096)
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mg.promote()
	if p := r.pair("a"); p.Consistent > journaled {
		t.Fatalf("suspended with a write still in the sidefile, pair a claims its secondary copy consistent as of %d (suspended at %d): "+
			"the secondary acknowledged only through %d", p.Consistent, p.Since, journaled)
	}
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); p.Consistent != p.Since || p.Since <= journaled {
		t.Fatalf("with the suspension acknowledged, pair a claims %d, want its suspension time %d (after %d)", p.Consistent, p.Since, journaled)
	}
}
