package schedpolicy

import (
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// policies returns the policy of every thread of the process.
func policies(t *testing.T) map[int]uint32 {
	t.Helper()
	tids, err := threads()
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]uint32{}
	for _, tid := range tids {
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue
		}
		out[tid] = attr.Policy
	}
	return out
}

// toNormal puts every thread of the process back under the default
// policy, keeping its nice value, as a process starts: an earlier run of
// TestBatchCoversEveryThreadAndLaterOnes in the same process (go test
// -count 2 or more) leaves them under the batch policy.
func toNormal(t *testing.T) {
	t.Helper()
	for tid, p := range policies(t) {
		if p != unix.SCHED_BATCH {
			continue
		}
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // the thread ended meanwhile
		}
		set := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL, Nice: attr.Nice}
		if err := unix.SchedSetAttr(tid, &set, 0); err != nil && err != unix.ESRCH {
			t.Fatalf("thread %d: back to the default policy: %v", tid, err)
		}
	}
}

// TestBatchLeavesASingleProcessorAlone: a process with one processor keeps
// the default policy.
func TestBatchLeavesASingleProcessorAlone(t *testing.T) {
	toNormal(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	n, err := Batch()
	if n != 0 || err != nil {
		t.Fatalf("Batch with GOMAXPROCS 1: switched %d, %v; want 0, nil", n, err)
	}
	for tid, p := range policies(t) {
		if p == unix.SCHED_BATCH {
			t.Errorf("thread %d: SCHED_BATCH with a single processor", tid)
		}
	}
}

// TestBatchCoversEveryThreadAndLaterOnes: after Batch every thread of the
// process runs under the batch policy, and so do threads the runtime
// creates afterwards, which inherit it; the nice value is kept.
func TestBatchCoversEveryThreadAndLaterOnes(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("a single processor: Batch leaves the process alone")
	}
	before, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		t.Skipf("sched_getattr: %v", err)
	}
	if before.Policy != unix.SCHED_NORMAL && before.Policy != unix.SCHED_BATCH {
		t.Skipf("the test runs under policy %d, which Batch keeps", before.Policy)
	}
	if _, err := Batch(); err != nil {
		t.Fatal(err)
	}
	for tid, p := range policies(t) {
		if p != unix.SCHED_BATCH {
			t.Errorf("thread %d: policy %d after Batch, want SCHED_BATCH (%d)", tid, p, unix.SCHED_BATCH)
		}
	}
	// Threads locked by goroutines that wait make the runtime create new
	// ones for the rest.
	const n = 8
	var ready, release sync.WaitGroup
	ready.Add(n)
	release.Add(1)
	tids := make(chan int, n)
	for range n {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tids <- unix.Gettid()
			ready.Done()
			release.Wait()
		}()
	}
	ready.Wait()
	close(tids)
	for tid := range tids {
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			t.Fatal(err)
		}
		if attr.Policy != unix.SCHED_BATCH {
			t.Errorf("thread %d created after Batch: policy %d, want SCHED_BATCH", tid, attr.Policy)
		}
		if attr.Nice != before.Nice {
			t.Errorf("thread %d: nice %d, want %d as before", tid, attr.Nice, before.Nice)
		}
	}
	release.Done()
	if n, err := Batch(); err != nil || n != 0 {
		t.Errorf("Batch again: switched %d, %v; want 0, nil", n, err)
	}
}

// TestOnlyTheDefaultPolicyIsSwitched: a policy an operator chose (idle,
// real-time, batch) is kept.
func TestOnlyTheDefaultPolicyIsSwitched(t *testing.T) {
	for _, tc := range []struct {
		policy, want uint32
		switched     bool
	}{
		{unix.SCHED_NORMAL, unix.SCHED_BATCH, true},
		{unix.SCHED_BATCH, unix.SCHED_BATCH, false},
		{unix.SCHED_IDLE, unix.SCHED_IDLE, false},
		{unix.SCHED_FIFO, unix.SCHED_FIFO, false},
		{unix.SCHED_RR, unix.SCHED_RR, false},
	} {
		got, switched := switchTo(tc.policy)
		if got != tc.want || switched != tc.switched {
			t.Errorf("switchTo(%d) = %d, %v; want %d, %v", tc.policy, got, switched, tc.want, tc.switched)
		}
	}
}
