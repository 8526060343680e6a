package site

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"duplex/disk"
)

// TestAStopEndsAtOnceOnASecondaryStoppedForGoodOnItsDisk: a secondary
// not run by RunSecondary, stopped on a disk fault, opens nothing again by
// itself: it refuses the primary until an operator fixes the disk and
// restarts it, and says so. A stop meanwhile gives up at once, naming the
// refusal, as for any refusal that lasts, not after the patience.
func TestAStopEndsAtOnceOnASecondaryStoppedForGoodOnItsDisk(t *testing.T) {
	const patience = 10 * time.Second
	cfg := linkConfig(t)
	in := disk.NewInjector(nil)
	s, _ := runQuietSecondary(t, cfg, in)
	sp := runStoppingPrimary(t, cfg, s.ListenAddr(), patience)
	p, logs, stop := sp.p, sp.logs, sp.stop
	replicatedBeforeTheFault(t, p, func() *Secondary { return s }, 4096)

	in.Inject(disk.Fault{Op: disk.OpSync, Under: cfg.Secondary.Journal, Err: disk.EIO})
	if err := p.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x44}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the secondary to refuse the primary's dials, saying it must be restarted", func() bool {
		ms := p.Mover().Stats()
		return ms.Refusals >= 2 && ms.FailedDialRefused && strings.Contains(ms.LastRefusal, "then restart the secondary")
	})
	start := time.Now()
	stop()
	took := time.Since(start)
	runErr := *sp.runErr
	if runErr == nil {
		t.Fatalf("the stop, the secondary refusing it until restarted, reported clean after %s", took.Round(time.Millisecond))
	}
	if took > patience/2 {
		t.Errorf("the stop gave up %s after it began, the patience %s: a secondary that waits for an operator was waited for: %v",
			took.Round(time.Millisecond), patience, runErr)
	}
	if len(logs.lines("the secondary refuses this primary")) == 0 {
		t.Errorf("the stop did not say the secondary refuses this primary:\n%s", logs.String())
	}
	t.Logf("stopped after %s: %v", took.Round(time.Millisecond), runErr)
}
