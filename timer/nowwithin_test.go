package timer

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"duplex/disk"
)

// TestAStampGivenUpForAHungLeaseIsNotHandedOut: the disk of the lease
// stops answering under a renewal, and the stamps reach the mark on disk.
// NowWithin gives its stamp up once the lease's write has taken its wait,
// with a LeaseHungError, while Now waits; once the disk answers, both
// stamp, and every stamp handed out is below the mark on disk.
func TestAStampGivenUpForAHungLeaseIsNotHandedOut(t *testing.T) {
	dir := t.TempDir()
	clock, tm, release := leaseOnAHangingDisk(t, filepath.Join(dir, "timer.json"))
	clock.step(2 * time.Second) // past the mark: every stamp waits
	waited := make(chan int64, 1)
	go func() { waited <- tm.Now() }()
	_, err := tm.NowWithin(100 * time.Millisecond)
	var lh *LeaseHungError
	if !errors.As(err, &lh) || lh.D < 100*time.Millisecond || lh.Waiting < 1 {
		t.Fatalf("a stamp past the mark, its lease's write hung: %v, want a LeaseHungError after 100ms with a stamp waiting", err)
	}
	t.Logf("given up: %v", err)
	select {
	case ts := <-waited:
		t.Fatalf("Now, its lease's write hung, returned %d", ts)
	default:
	}
	release()
	first := <-waited
	ts, err := tm.NowWithin(100 * time.Millisecond)
	if err != nil || ts <= first {
		t.Fatalf("NowWithin once the disk answered: %d, %v; want above %d", ts, err, first)
	}
	tm.wait()
	if m := tm.lease.mark.Load(); ts >= m {
		t.Errorf("stamp %d handed out at or above the mark on disk %d", ts, m)
	}
}

// leaseOnAHangingDisk opens a timer with a lease of 1 s at path, on a
// fake clock, whose disk then hangs every write until release (called
// at the test's end too).
func leaseOnAHangingDisk(t *testing.T, path string) (*fakeClock, *Timer, func()) {
	t.Helper()
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC).UnixNano())
	hung := disk.NewInjector(nil)
	tm, err := OpenPersistent(hung, path, clock.now, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})
	release := sync.OnceFunc(func() { close(held) })
	t.Cleanup(release)
	hung.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Dir(path), Hang: held})
	return clock, tm, release
}
