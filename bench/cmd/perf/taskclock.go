package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// taskClock counts a running process's CPU time exactly (perf stat's
// task-clock, every thread, those started while counting included), where
// /proc/PID/stat's user and system time come in 10 ms ticks: a 1 MiB burst
// of 256 writes costs the server about 100 ms, so ticks alone move its CPU
// per MiB by ±10 % from one run to the next. It counts the process's
// context switches too: on a CPU it shares with fio, each is a hand-over
// between the server's threads or to fio and back, which the runtime of a
// Go server adds to (its monitor's polls, a thread woken for a processor).
type taskClock struct {
	cmd *exec.Cmd
	out string
}

// startTaskClock starts counting pid's task-clock; nil, nil if perf is not
// installed (the figures are then left out).
func startTaskClock(ctx context.Context, dir string, pid int) (*taskClock, error) {
	if _, err := exec.LookPath("perf"); err != nil {
		return nil, nil
	}
	out := filepath.Join(dir, fmt.Sprintf("taskclock-%d.csv", pid))
	cmd := exec.CommandContext(ctx, "perf", "stat", "-e", "task-clock,context-switches", "-x,", "-o", out, "-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf stat -p %d: %w", pid, err)
	}
	// perf has no signal of being attached; it attaches within a few ms.
	time.Sleep(150 * time.Millisecond)
	return &taskClock{cmd, out}, nil
}

// stop ends the count and returns the CPU time and the context switches
// counted.
func (t *taskClock) stop() (time.Duration, int64, error) {
	if t == nil {
		return 0, 0, nil
	}
	if err := t.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return 0, 0, fmt.Errorf("stop perf stat: %w", err)
	}
	// perf stat writes its counts on SIGINT, then dies of it.
	if err := t.cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
			return 0, 0, fmt.Errorf("perf stat: %w", err)
		}
	}
	b, err := os.ReadFile(t.out)
	if err != nil {
		return 0, 0, err
	}
	os.Remove(t.out)
	var clock time.Duration
	var switches int64
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		switch f[2] {
		case "task-clock":
			ms, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return 0, 0, fmt.Errorf("perf stat's task-clock %q: %w", f[0], err)
			}
			clock, found = time.Duration(ms*float64(time.Millisecond)), true
		case "context-switches":
			// Left at 0 where perf could not count it.
			switches, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	if !found {
		return 0, 0, fmt.Errorf("no task-clock in perf stat's output %q", b)
	}
	return clock, switches, nil
}
