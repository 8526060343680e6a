package site

import (
	"context"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"duplex/coupling"
)

// TestAStoppedPromotedSiteTriesNoLeaveAfterItsStop: a promoted site whose
// leave of the coupled group etcd does not answer tries it again while it
// runs, and not once after its Run returned: neither the site a switchover
// promoted in place nor the one duplex promote serves after a restart.
// A try after the stop would leave (or log) on behalf of a site that no
// longer runs, perhaps after another process took its directory.
func TestAStoppedPromotedSiteTriesNoLeaveAfterItsStop(t *testing.T) {
	var lf *leaveFails
	g := startCoupledSwitchover(t, coupledSwitchoverOpts{aStore: func(m *coupling.MemStore) coupling.Store {
		lf = newLeaveFails(m, math.MaxInt32)
		return lf
	}})
	g.switchOver(t)
	waitFor(t, 30*time.Second, "the promoted site trying its leave again", func() bool { return lf.calls.Load() >= 3 })
	g.as.stop()
	<-g.as.done
	noTryAfter := func(what string) {
		t.Helper()
		n := lf.calls.Load()
		time.Sleep(3 * leaveRetry)
		if got := lf.calls.Load(); got != n {
			t.Errorf("%s: %d tries of the leave after its Run returned", what, got-n)
		}
	}
	noTryAfter("the site promoted in place")

	p, err := OpenPromoted(g.acfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PromotedOptions{CouplingStore: lf})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	before := lf.calls.Load()
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 30*time.Second, "the promoted site run again trying its leave", func() bool { return lf.calls.Load() >= before+2 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("the promoted site run again: %v", err)
	}
	noTryAfter("the promoted site run again")
}
