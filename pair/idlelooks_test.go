package pair

import (
	"context"
	"fmt"
	"testing"
)

// idleLooks is what the session's loops do every tick at an idle, duplex
// session: the manager's loop and its suspend watcher, apart from promote
// (which moves every pair's consistency time as acknowledgements come).
func (r *rig) idleLooks() {
	r.mg.copyOne(context.Background())
	r.mg.endCopies()
	r.mg.copying()
	r.mg.suspendAbandoned()
	r.mg.suspendWriteFailed()
	r.mg.autoSuspend()
}

func idleRig(t testing.TB, n int) *rig {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("v%04d", i)
	}
	r := newRig(t, twinRegion, 1<<30, names...)
	r.settle()
	return r
}

// The looks of an idle session change nothing, so they publish nothing and
// allocate nothing, however many pairs it has; a change made after them is
// published as before.
func TestIdleLooksPublishNothing(t *testing.T) {
	r := idleRig(t, 256)
	r.idleLooks() // the link's return, if the rig's mover says so, is seen once
	before := r.mg.status.Load()
	if allocs := testing.AllocsPerRun(20, r.idleLooks); allocs != 0 {
		t.Errorf("an idle tick's looks allocated %.0f times, want none", allocs)
	}
	if r.mg.status.Load() != before {
		t.Errorf("an idle tick's looks published the pairs' states again, nothing having changed")
	}
	if err := r.mg.Suspend("v0100"); err != nil {
		t.Fatal(err)
	}
	r.idleLooks()
	if p := r.mg.Pairs()[100]; p.Volume != "v0100" || p.State != Suspended {
		t.Errorf("after a suspension and an idle tick, status says %s is %s, want suspended", p.Volume, p.State)
	}
}

// BenchmarkIdleLooks: an idle tick's looks at 1,024 pairs (the manager
// ticks ten times a second).
func BenchmarkIdleLooks(b *testing.B) {
	r := idleRig(b, 1024)
	r.idleLooks()
	b.ReportAllocs()
	for b.Loop() {
		r.idleLooks()
	}
}
