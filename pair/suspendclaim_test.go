package pair

import (
	"testing"

	"duplex/sidefile"
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
	r.ss.mu.Lock()
	lost := r.ss.side.Drain()
	r.ss.mu.Unlock()
	for _, u := range lost {
		r.ss.side.Release(sidefile.Cost(int(u.Length)))
	}
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
