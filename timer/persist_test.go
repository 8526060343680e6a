package timer

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a wall clock a test sets and steps.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64           { return c.ns.Load() }
func (c *fakeClock) step(d time.Duration) { c.ns.Add(int64(d)) }

// TestPersistedStampsStayAboveAnEarlierRunWhenTheClockStepsBack: a primary
// that stops (cleanly or by a crash) and starts again on a clock an hour
// behind stamps above everything it stamped before.
func TestPersistedStampsStayAboveAnEarlierRunWhenTheClockStepsBack(t *testing.T) {
	for _, clean := range []bool{false, true} {
		name := "crash"
		if clean {
			name = "clean stop"
		}
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "timer.json")
			clock := &fakeClock{}
			clock.ns.Store(time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC).UnixNano())
			t1, err := OpenPersistent(nil, path, clock.now, time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			var last int64
			for range 10000 {
				clock.step(time.Millisecond) // 10s in all: the mark is renewed on the way
				last = t1.Now()
			}
			if clean {
				if err := t1.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				t1.wait() // a renewal in flight at the crash is not counted on
			}
			clock.step(-time.Hour)
			t2, err := OpenPersistent(nil, path, clock.now, time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := t2.Now(); got <= last {
				t.Fatalf("after a restart on a clock an hour behind: stamp %d, not above %d stamped before", got, last)
			}
			if clean {
				// A clean stop records the last stamp itself: the next run
				// does not start a whole lease ahead.
				if got := t2.Now(); got > last+int64(time.Millisecond) {
					t.Errorf("after a clean stop: stamp %d is %s past the last %d", got, time.Duration(got-last), last)
				}
			}
		})
	}
}

// TestPersistedTimerWritesRarely: the mark is written ahead of use, not per
// stamp: a second of stamps with a one-second lease costs a few writes.
func TestPersistedTimerWritesRarely(t *testing.T) {
	path := filepath.Join(t.TempDir(), "timer.json")
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC).UnixNano())
	tm, err := OpenPersistent(nil, path, clock.now, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 100000 {
		clock.step(10 * time.Microsecond)
		tm.Now()
	}
	tm.wait()
	if n := tm.lease.writes.Load(); n > 5 {
		t.Errorf("%d writes of the mark for 100000 stamps over 1s with a 1s lease, want at most 5", n)
	}
}

// TestOpenPersistentRejectsAGarbledMark: a mark that cannot be read is an
// error, not a silent start from zero.
func TestOpenPersistentRejectsAGarbledMark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "timer.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPersistent(nil, path, nil, time.Second, nil); err == nil {
		t.Fatal("OpenPersistent accepted a garbled mark")
	}
}

// BenchmarkNow and BenchmarkNowPersistent compare a stamp without and with
// the persisted mark: the mark is renewed in the background, so the write
// path pays only an atomic load for it.
func BenchmarkNow(b *testing.B) {
	tm := New()
	for b.Loop() {
		tm.Now()
	}
}

func BenchmarkNowPersistent(b *testing.B) {
	tm, err := OpenPersistent(nil, filepath.Join(b.TempDir(), "timer.json"), nil, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tm.Close()
	for b.Loop() {
		tm.Now()
	}
}

// TestRestartsWithinTheLeaseKeepStampsNearTheClock: a primary killed and
// restarted again and again, each time before its clock reached the mark of
// the run before, stamps above everything stamped before, but never more than
// one lease ahead of its clock. The secondary's consistency time is one of
// these stamps: a lead that grew by a lease with every restart would make it
// claim, seconds ahead of the clock, writes acknowledged since that it does
// not hold.
func TestRestartsWithinTheLeaseKeepStampsNearTheClock(t *testing.T) {
	restartLoop(t, 10, 1000) // 100ms of stamps, then a kill -9
}

// TestQuickRestartsKeepStampsWithinTheLease: a primary in a crash loop,
// killed and restarted every 10ms of its clock, stamps no more than one
// lease ahead of the clock however many times it restarts. The secondary's
// consistency time is one of these stamps; a lead past the lease would make
// it claim writes not yet made.
func TestQuickRestartsKeepStampsWithinTheLease(t *testing.T) {
	restartLoop(t, 200, 100) // 10ms of stamps, then a kill -9
}

// restartLoop opens a timer of a 2s lease runs times on one state file, as
// a primary killed -9 and restarted does, each run taking stamps stamps
// 100µs of its clock apart; every stamp must be above all stamped before,
// and at most the lease ahead of the clock.
func restartLoop(t *testing.T, runs, stamps int) {
	t.Helper()
	const ahead = 2 * time.Second
	path := filepath.Join(t.TempDir(), "timer.json")
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC).UnixNano())
	var last int64
	for run := range runs {
		tm, err := OpenPersistent(nil, path, clock.now, ahead, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range stamps {
			clock.step(100 * time.Microsecond)
			ts := tm.Now()
			if ts <= last {
				t.Fatalf("run %d: stamp %d not above %d stamped before", run, ts, last)
			}
			last = ts
			if lead := time.Duration(ts - clock.now()); lead > ahead {
				t.Fatalf("run %d: stamp %s ahead of the clock, more than the lease of %s", run, lead, ahead)
			}
		}
		tm.wait() // a renewal in flight at the kill is not counted on
	}
}
