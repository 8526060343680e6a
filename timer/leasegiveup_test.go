package timer

import (
	"path/filepath"
	"testing"
	"time"
)

// TestALeaseWriteGivenUpNeverLowersTheNextRunsMark: the disk of a run's
// lease stops answering under a renewal, and its Close waits behind it;
// the stop gives the timer up (Abandon) and the next run starts, on the
// disk answering again (here: another FS on the same file), and stamps
// seconds past the first run. When the first run's disk answers, neither
// its renewal nor its Close replaces the file: the next run's mark stays,
// and a third run after a crash of the second, on a clock an hour behind,
// stamps above every stamp the second one handed out.
func TestALeaseWriteGivenUpNeverLowersTheNextRunsMark(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "timer.json")
	clock, t1, release := leaseOnAHangingDisk(t, path)
	// Into the last half of the lease: the renewal starts, and hangs.
	clock.step(600 * time.Millisecond)
	t1.Now()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if d, _ := t1.LeaseWait(); d > 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the renewal of the first run's lease never began to write")
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- t1.Close() }()
	t1.Abandon()

	t2, err := OpenPersistent(nil, path, clock.now, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	for range 5000 {
		clock.step(time.Millisecond) // 5 s: the second run's mark moves on
		last = t2.Now()
	}
	t2.wait()

	release()
	if err := <-closed; err == nil {
		t.Error("the first run's Close, given up, returned no error")
	}
	t1.wait()
	// The second run crashes (no Close); the third starts on a clock that
	// went back.
	clock.step(-time.Hour)
	t3, err := OpenPersistent(nil, path, clock.now, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := t3.Now(); got <= last {
		t.Fatalf("the third run stamps %d, %s below the second run's last stamp %d: a write of the first run, given up, replaced the mark",
			got, time.Duration(last-got), last)
	}
}
