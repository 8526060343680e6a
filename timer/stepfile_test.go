package timer

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStepFileStepsTheClockAndTheTimerStaysIncreasing steps a StepFile clock
// forward and back by rewriting its file, as the randomized operations test
// does to a running primary: the clock follows each step, and the timer on it
// never hands out a stamp at or below one it handed out before.
func TestStepFileStepsTheClockAndTheTimerStaysIncreasing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "step")
	clock := StepFile(path)
	if d := clock() - time.Now().UnixNano(); d < -int64(time.Second) || d > int64(time.Second) {
		t.Fatalf("without a file the clock is %v off the wall clock", time.Duration(d))
	}
	tm := NewWithClock(clock)
	last := tm.Now()
	for _, step := range []time.Duration{time.Hour, -time.Hour, -2 * time.Hour, 0} {
		if err := os.WriteFile(path, []byte(step.String()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			ts := tm.Now()
			if ts <= last {
				t.Fatalf("stamp %d after %d, the clock stepped to %v", ts, last, step)
			}
			last = ts
			off := time.Duration(clock() - time.Now().UnixNano())
			if off > step-time.Minute && off < step+time.Minute {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the clock is %v off the wall clock 10s after a step to %v", off, step)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// A file that does not parse leaves the clock where it was.
	if err := os.WriteFile(path, []byte("soon"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * stepFileRecheck)
	if off := time.Duration(clock() - time.Now().UnixNano()); off < -time.Minute || off > time.Minute {
		t.Fatalf("a garbled file moved the clock to %v off the wall clock", off)
	}
}
