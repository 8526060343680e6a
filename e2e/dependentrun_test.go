package e2e

import (
	"context"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/transport"
	"duplex/workload"
)

// dependentRun is the dependent-write workload (layout) at a primary linked
// to a secondary over an in-memory network, the invariant checked at the
// secondary after every group it applies.
type dependentRun struct {
	net   *transport.MemNetwork
	p     *primary
	sec   *secondarySite
	bad   violations
	stop  context.CancelFunc
	done  chan error
	acked int64 // writes acknowledged, once done has answered
}

// startDependentRun starts the secondary (sopts, its check on every applied
// group added), the primary (popts, dialing over net) and the workload's
// clients, seeded with seed.
func startDependentRun(t *testing.T, net *transport.MemNetwork, sopts secondaryOpts, popts primaryOpts, seed uint64) *dependentRun {
	t.Helper()
	dir := t.TempDir()
	r := &dependentRun{net: net, done: make(chan error, 1)}
	sopts.onApplied = func(s *secondarySite, g *consistency.Group) {
		vs, err := workload.Check(layout, s.readDirect)
		r.bad.add(g.Number, vs, err)
	}
	r.sec = startSecondary(t, dir, net, sopts)
	popts.dialer = net
	r.p = startPrimary(t, dir, popts)
	ctx, stop := context.WithCancel(context.Background())
	r.stop = stop
	t.Cleanup(stop)
	go func() {
		acked, err := workload.Run(ctx, layout, r.p, 0, seed)
		r.acked = acked
		r.done <- err
	}()
	return r
}

// waitGroups waits until n groups were checked, failing if none is applied
// for 30 s.
func (r *dependentRun) waitGroups(t *testing.T, n int) {
	t.Helper()
	waitGroups(t, &r.bad, n, 30*time.Second, func() string { return replicationState(r.p.mover, r.sec.sec) })
}

// moreGroups returns a wait for 20 groups more than were checked when it
// is called.
func (r *dependentRun) moreGroups(t *testing.T) func() {
	return func() {
		t.Helper()
		n, _ := r.bad.snapshot()
		r.waitGroups(t, n+20)
	}
}

// finish stops the clients, heals the link and has everything acknowledged
// arrive: it fails on any violation of the invariant and on a secondary
// that is not then the primary's copy, and returns how many groups were
// checked.
func (r *dependentRun) finish(t *testing.T) int {
	t.Helper()
	r.stop()
	if err := <-r.done; err != nil {
		t.Fatalf("workload: %v", err)
	}
	r.net.SetFaults(transport.Faults{})
	quiesce(t, r.p, r.sec)
	n, list := r.bad.snapshot()
	if len(list) > 0 {
		t.Fatalf("violations:\n%v", list)
	}
	assertConverged(t, layout.Volumes, layout.BlocksPerVolume, r.p.read, r.sec.read)
	return n
}
