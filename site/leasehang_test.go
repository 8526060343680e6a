package site

import (
	"testing"
	"time"
)

// TestAHungStateDiskHoldsEveryWriteOnceTheLeaseRunsOutAndTheStopGoesOn:
// the disk of the primary's state directory, which holds the common
// timer's lease, stops answering. Writes to vol2, whose region the
// activity log marks on disk, go on until the stamps reach the lease on
// disk; then one waits for the lease's renewal, and the status and
// metrics name the timer's lease and the write that waits for it. The
// stop returns within its bound (the mover's cut waits for a stamp under
// the subsystem's lock), not clean, and the restart makes the
// secondary's volumes the primary's.
func TestAHungStateDiskHoldsEveryWriteOnceTheLeaseRunsOutAndTheStopGoesOn(t *testing.T) {
	p, s, h, logs, stop := stateDiskHanging(t, time.Second, 0)
	cfg := p.cfg
	wrote := holdWritesOnTheLease(t, p)
	t.Logf("status: %s", p.Status().DiskWait)
	select {
	case err := <-wrote:
		t.Fatalf("a write with the timer's lease hung on its disk returned: %v", err)
	default:
	}
	var stopErr error
	start := time.Now()
	within(t, 20*time.Second, "the stop", func() { stopErr = stop() })
	t.Logf("the stop, after %s: %v", time.Since(start).Round(time.Millisecond), stopErr)
	if len(logs.lines("not clean")) == 0 {
		t.Errorf("the stop's log does not say it is not clean:\n%s", logs.String())
	}
	if len(logs.lines("timer's lease")) == 0 {
		t.Errorf("the stop's log does not name the timer's lease:\n%s", logs.String())
	}
	h.release()
	restartMakesTheSecondarysVolumesThePrimarys(t, cfg, s)
}
