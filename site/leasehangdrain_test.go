package site

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// holdWritesOnTheLease writes to vol2 of p, whose state directory's disk
// hangs, until a write waits for the timer's lease (the stamps reached
// the lease on disk), as the status and metrics say; the writes' end
// comes on the channel returned.
func holdWritesOnTheLease(t *testing.T, p *Primary) <-chan error {
	t.Helper()
	wrote := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if err := p.Write(context.Background(), "vol2", bytes.Repeat([]byte{byte(i)}, 4096), 4096); err != nil {
				wrote <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	waitFor(t, 20*time.Second, "the status and metrics to say a write waits for the timer's lease", func() bool {
		m := sampleMap(p.Samples())
		return strings.Contains(p.Status().DiskWait, "timer lease write") && m["timer_lease_write_seconds"].Value > 0 &&
			m["timer_waiting_stamps"].Value >= 1
	})
	return wrote
}

// TestAHungLeaseEndsTheStopsDrainAfterTheStopsWait: the timer's lease
// hangs with the disk of the primary's state directory, and every stamp
// waits for it, the mover's cut among them: the drain of the stop can
// ship nothing more. The stop gives the drain up once the lease's write
// has not ended for the stop's wait on the state directory's disk (1 s
// here), as it gives up the others, not after the drain's own timeout
// (10 s here, 5 min by default); it says why, and that the stop is not
// clean.
func TestAHungLeaseEndsTheStopsDrainAfterTheStopsWait(t *testing.T) {
	p, s, h, logs, stop := stateDiskHanging(t, time.Second, 0)
	cfg := p.cfg
	holdWritesOnTheLease(t, p)
	stopGivesItsDrainUpForTheLease(t, stop, logs)
	// The lease's writes given up rename nothing once the disk answers:
	// a late one could replace the mark of a run started meanwhile with a
	// lower one.
	mark := readLease(t, p)
	h.release()
	waitFor(t, 10*time.Second, "the write of the timer's lease given up to end", func() bool { d, _ := p.timer.LeaseWait(); return d == 0 })
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if got := readLease(t, p); got != mark {
			t.Fatalf("the timer's lease, given up at the stop, was written once the disk answered: %s, then %s", mark, got)
		}
	}
	restartMakesTheSecondarysVolumesThePrimarys(t, cfg, s)
}

// readLease returns the timer's lease as on p's disk.
func readLease(t *testing.T, p *Primary) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.stateDir, "timer.json"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestAHungLeaseEndsAnOperatorsDrainAfterTheStopsWait: the operator
// suspends vol1 with --drain while the timer's lease hangs with the disk
// of the state directory: the drain can ship nothing more, and is given
// up once the lease's write has not ended for the stop's wait (1 s
// here), not after the command's drain timeout, saying why; vol1 is left
// as it was.
func TestAHungLeaseEndsAnOperatorsDrainAfterTheStopsWait(t *testing.T) {
	p, _, _, _, _ := stateDiskHanging(t, time.Second, 0)
	holdWritesOnTheLease(t, p)
	drainIsGivenUpForTheLease(t, p)
}

// TestAHungLeaseEndsAnOperatorsDrainWithNothingHeld: as
// TestAHungLeaseEndsAnOperatorsDrainAfterTheStopsWait, but every write
// was shipped before the stamps reached the lease on disk: the drain
// finds nothing held, while the mover's cut, stamping its horizon under
// the subsystem's lock, waits for the lease's write (a client's write
// stamped first would hold the lock as long). The suspension's marker,
// stamped under that lock, would wait for the lease's disk as long: the
// drain is given up after the stop's wait, saying why, and vol1 is left
// as it was.
func TestAHungLeaseEndsAnOperatorsDrainWithNothingHeld(t *testing.T) {
	p, _, _, _, _ := stateDiskHanging(t, time.Second, 0)
	aStampWaitsWithNothingHeld(t, p)
	drainIsGivenUpForTheLease(t, p)
}

// TestAHungLeaseEndsTheStopsDrainWithNothingHeld: as
// TestAHungLeaseEndsTheStopsDrainAfterTheStopsWait, but with nothing held
// when the stop drains, while the mover's cut waits for the lease's
// write: the stop still gives its drain up for the lease, saying so, and
// is not clean.
func TestAHungLeaseEndsTheStopsDrainWithNothingHeld(t *testing.T) {
	p, _, _, logs, stop := stateDiskHanging(t, time.Second, 0)
	aStampWaitsWithNothingHeld(t, p)
	stopGivesItsDrainUpForTheLease(t, stop, logs)
}

// drainIsGivenUpForTheLease suspends vol1 of p with --drain, the timer's
// lease hung: the drain is given up after the stop's wait (1 s), not the
// command's timeout, saying why, and vol1 is left duplex.
func drainIsGivenUpForTheLease(t *testing.T, p *Primary) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	within(t, 20*time.Second, "the suspension of vol1 with --drain", func() { err = pairOps{p}.Suspend(ctx, "vol1", true) })
	t.Logf("answered: %v", err)
	if err == nil || !strings.Contains(err.Error(), "timer's lease") {
		t.Errorf("the drain with the timer's lease hung: %v, want an error naming the lease", err)
	}
	if st := volumeStatus(p.Status(), "vol1").State; st != "duplex" {
		t.Errorf("vol1, its drain given up: %s, want duplex", st)
	}
}

// stopGivesItsDrainUpForTheLease stops the primary, the timer's lease
// hung: the stop's drain is given up after the stop's wait on the disk
// (1 s), before the drain's timeout (10 s), and its error and log say
// so, not clean.
func stopGivesItsDrainUpForTheLease(t *testing.T, stop func() error, logs *logBuffer) {
	t.Helper()
	var stopErr error
	within(t, 8*time.Second, "the stop, before the drain's timeout", func() { stopErr = stop() })
	t.Logf("the stop: %v", stopErr)
	if stopErr == nil || !strings.Contains(stopErr.Error(), "timer's lease") {
		t.Errorf("the stop's error does not name the timer's lease: %v", stopErr)
	}
	if len(logs.lines("drain", "timer's lease", "not clean")) == 0 {
		t.Errorf("the stop's log does not say the drain was given up for the timer's lease, not clean:\n%s", logs.String())
	}
}

// aStampWaitsWithNothingHeld waits until a stamp of p waits for the write
// of the timer's lease, every update captured before it acknowledged.
func aStampWaitsWithNothingHeld(t *testing.T, p *Primary) {
	t.Helper()
	waitFor(t, 20*time.Second, "a stamp to wait for the timer's lease, with nothing held", func() bool {
		d, waiting := p.timer.LeaseWait()
		return d > 0 && waiting >= 1 && nothingHeld(p)
	})
}

// nothingHeld says whether every update p captured was acknowledged.
func nothingHeld(p *Primary) bool {
	for _, ss := range p.subs {
		if ss.Sidefile().Stats().Used > 0 {
			return false
		}
	}
	return p.mover.Stats().HeldWithUpdates == 0
}
