package main

import (
	"math"
	"os"
	"syscall"
	"testing"
	"time"
)

// The clean figure leaves out exactly the windows the host took 5 % or
// more of, and a window whose steal was not read.
func TestSummarizeCleanLeavesOutStolenWindows(t *testing.T) {
	iv := 20 * time.Millisecond
	w := func(cpuP time.Duration, steal float64, ok bool) scaleWindow {
		return scaleWindow{cpuP: cpuP, cpuS: cpuP / 2, wall: 2 * time.Second, interval: iv, steal: steal, stealOK: ok}
	}
	ws := []scaleWindow{
		w(100*time.Millisecond, 0.01, true),
		w(120*time.Millisecond, 0.049, true),
		w(300*time.Millisecond, 0.05, true),
		w(400*time.Millisecond, 0.30, true),
		w(500*time.Millisecond, 0, false),
	}
	all, clean := summarize(ws, iv, false), summarize(ws, iv, true)
	if all.n != 5 || clean.n != 2 {
		t.Fatalf("windows: all %d, clean %d; want 5 and 2", all.n, clean.n)
	}
	// 100 intervals a window: 1.0 and 1.2 ms an interval, 5 and 6 % of a CPU.
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	if !near(clean.msP, 1.1) || !near(clean.pctP, 5.5) || !near(clean.msS, 0.55) {
		t.Errorf("clean medians: primary %.3f ms (%.2f %%), secondary %.3f ms; want 1.1 (5.5 %%), 0.55", clean.msP, clean.pctP, clean.msS)
	}
	if !near(all.msP, 3.0) {
		t.Errorf("median of all windows: %.3f ms an interval, want 3.0", all.msP)
	}
}

// threadsCPU counts what the process's threads ran: at least the CPU the
// kernel reports in its own rusage for a busy spell, which is tick-based.
func TestThreadsCPUCountsABusySpell(t *testing.T) {
	pid := os.Getpid()
	before, err := threadsCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	// The spell lasts until the kernel has counted 200 ms of CPU, not
	// 200 ms of the wall clock: on a loaded machine a wall-clock spell
	// gets a fraction of a CPU.
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	spent := func() time.Duration {
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		return time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	}
	for deadline := time.Now().Add(time.Minute); spent() < 200*time.Millisecond; {
		if time.Now().After(deadline) {
			t.Skipf("the machine gave this test %s of CPU in a minute", spent())
		}
	}
	ru := spent()
	after, err := threadsCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	if got := after - before; got < ru*8/10 {
		t.Errorf("threads' CPU over a busy spell of %s (rusage): %s", ru, got)
	}
}
