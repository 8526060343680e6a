package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"duplex/control"
	"duplex/pair"
)

// TestSuspendDrainThatCannotFinishSaysWhyAndLeavesThePairs: a suspend
// --drain that cannot ship what is held answers within its bound (the
// timeout the caller allows, or the link down for its patience) with the
// reason and what is still held, and leaves every pair as it was; once the
// link is back, the same command drains and suspends.
func TestSuspendDrainThatCannotFinishSaysWhyAndLeavesThePairs(t *testing.T) {
	t.Parallel()
	s := startDrainOps(t)
	addr := s.prim.ControlAddr()
	s.net.SetDown(true)
	defer s.net.SetDown(false)
	if err := s.prim.Write(context.Background(), "vol1", make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	allDuplex := func(when string) {
		t.Helper()
		for name, p := range s.pairs() {
			if p.State != pair.Duplex {
				t.Errorf("%s: %s is %s, want it left duplex", when, name, p.State)
			}
		}
	}
	wantIn := func(err error, parts ...string) {
		t.Helper()
		if err == nil {
			t.Fatalf("the drain succeeded with the link down")
		}
		for _, p := range parts {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not say %q", err, p)
			}
		}
	}

	// The caller allows 8s: the drain gives up in time for its answer to
	// arrive, before the link has been down for the patience.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	_, err := control.PairOp(ctx, control.Endpoint{Addr: addr}, "secret", "vol1", "suspend", true)
	cancel()
	wantIn(err, "timeout ran out after", "the link to the secondary is down since", "bytes of updates are still held", "vol1 is left duplex, not suspended")
	t.Logf("within the caller's timeout: %v", err)
	allDuplex("after a drain that ran out of time")

	// No deadline of the caller's: the link has been down for the
	// patience now, and the drain says so at once.
	start := time.Now()
	_, err = control.PairOp(context.Background(), control.Endpoint{Addr: addr}, "secret", "vol1", "suspend", true)
	wantIn(err, "has been down since", "bytes of updates are still held", "vol1 is left duplex, not suspended", "suspend without --drain")
	t.Logf("link down (answered after %v): %v", time.Since(start).Round(time.Millisecond), err)
	allDuplex("after a drain with the link down")
	_, err = control.AllPairsOp(context.Background(), control.Endpoint{Addr: addr}, "secret", "suspend", true)
	wantIn(err, "has been down since", "no pair is suspended")
	allDuplex("after a drain of every pair with the link down")

	// The link is back: the drain ships what is held, then suspends.
	s.net.SetDown(false)
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := control.PairOp(ctx, control.Endpoint{Addr: addr}, "secret", "vol1", "suspend", true); err != nil {
		t.Fatalf("suspend --drain with the link back: %v", err)
	}
	if got := s.pairs()["vol1"].State; got != pair.Suspended {
		t.Fatalf("vol1 is %s after a drain that succeeded, want suspended", got)
	}
	// What may stay is the marker that announces the suspension, never
	// the write.
	if held := s.prim.Mover().Stats().HeldBytes; held >= 4096 {
		t.Errorf("%d bytes still held after the drain succeeded", held)
	}
}
