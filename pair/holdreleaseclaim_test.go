package pair

import (
	"context"
	"testing"
)

// TestHoldGivenUpClaimsNoTimeUntilACopyEnds: a pair suspended part-way
// through its resync claims the time of its suspension before the resync,
// which the secondary's hold keeps. Once the secondary says it holds the
// volume consistent as of no time (it gave the hold up for lack of journal
// room and applied the held groups over that image), the pair claims no
// time, across a restart too, until a copy of it ends; the other pairs keep
// theirs.
func TestHoldGivenUpClaimsNoTimeUntilACopyEnds(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.settle()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	for i := range 40 {
		r.write("a", int64(i)*twinRegion, 4096)
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.mg.copyOne(context.Background())
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); p.Consistent == 0 {
		t.Fatalf("setup: pair %+v, want it claimed as of its suspension before the resync", p)
	}

	r.mv.mu.Lock()
	r.mv.inconsistent = []string{"a"}
	r.mv.mu.Unlock()
	r.write("b", 0, 4096)
	r.mv.ship()
	if !r.mg.promote() {
		t.Fatal("promote does not report the change, which Run saves at once")
	}
	if err := r.mg.save(false); err != nil { // as Run does
		t.Fatal(err)
	}
	if p := r.pair("a"); p.Consistent != 0 {
		t.Fatalf("the secondary says it holds a consistent as of no time (its hold given up), but pair a claims %d (suspended since %d)", p.Consistent, p.Since)
	}
	if p := r.pair("b"); p.Consistent == 0 {
		t.Fatalf("pair b claims no time once a's hold was given up: %+v", p)
	}

	// Restarted before the secondary is reached again, it still claims none.
	r.mv.mu.Lock()
	r.mv.inconsistent = nil
	r.mv.mu.Unlock()
	r.crash()
	r.mg.promote()
	if p := r.pair("a"); p.Consistent != 0 {
		t.Fatalf("after a restart, pair a claims %d though the secondary gave its hold up", p.Consistent)
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if p := r.pair("a"); p.State != Duplex || p.Consistent == 0 {
		t.Fatalf("pair a once its copy ended: %+v, want duplex with a consistency time", p)
	}
}
