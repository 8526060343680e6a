package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/disk"
)

// TestAFlushThatFailsWithTheLogOffAtAStopLeavesItUnclean: the activity
// log's flush of vol1 hangs, the log is turned off meanwhile (its disk
// fails a write), and the primary is stopped. Only then does the flush
// end, failing: a writeback error, which the kernel reports to that
// fdatasync alone, so the stop's own flush of vol1 passes. The stop must
// not save the pair state clean over data that may not be on vol1's disk
// (here the disk lost the write): restarted, the primary copies vol1
// again, making the secondary's vol1 the primary's.
func TestAFlushThatFailsWithTheLogOffAtAStopLeavesItUnclean(t *testing.T) {
	old := actlog.Idle
	actlog.Idle = 500 * time.Millisecond
	t.Cleanup(func() { actlog.Idle = old })
	cfg, s, dialer := linkedSecondary(t)
	var hung atomic.Bool
	entered, released := make(chan struct{}), make(chan struct{})
	var enter, release sync.Once
	t.Cleanup(func() { release.Do(func() { close(released) }) })
	var failOnce atomic.Bool
	inj := disk.NewInjector(nil)
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{
		Dialer: dialer, CopyReadWait: healthyReadWait, FS: inj,
		stopFlushWait: 20 * time.Second,
		beforeFlush: func(vol string) error {
			if vol != "vol1" || !hung.Load() {
				return nil
			}
			first := false
			enter.Do(func() { first = true; close(entered) })
			if !first {
				return nil
			}
			<-released
			if failOnce.CompareAndSwap(true, false) {
				return disk.EIO
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stop := runUntil(t, func(ctx context.Context) { runErr = p.Run(ctx, 10*time.Second) })
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })

	failOnce.Store(true)
	hung.Store(true)
	data := bytes.Repeat([]byte{0x78}, 4096)
	if err := p.Write(context.Background(), "vol1", data, 8192); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatalf("after 30 s: no flush of vol1 to unmark the write's region; goroutines:\n%s", goroutines())
	}
	// The write never reached the disk: its writeback fails.
	if err := p.vols["vol1"].WriteAt(make([]byte, 4096), 8192); err != nil {
		t.Fatal(err)
	}
	// vol2's region unmarked, its next write marks it afresh, which the
	// log's disk fails: the log is turned off.
	waitFor(t, 30*time.Second, "only vol1's region marked", func() bool { return p.actlog.Marked() == 1 })
	inj.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(PairStateDir(cfg), "activity.log"), Err: disk.EIO})
	if err := p.Write(context.Background(), "vol2", bytes.Repeat([]byte{0x79}, 4096), 4096); err != nil {
		t.Fatal(err)
	}
	if p.Status().ActivityLogOff == "" {
		t.Fatal("the activity log, its write failed, is not off")
	}
	inj.Clear()

	// The flush ends, failing, once the pair manager has stopped.
	time.AfterFunc(time.Second, func() { release.Do(func() { close(released) }) })
	within(t, 30*time.Second, "the stop", func() { stop() })
	t.Logf("the stop: %v", runErr)

	p, _ = startPrimary(t, cfg, healthyReadWait)
	if volumeStatus(p.Status(), "vol1").State == "suspended" {
		if err := p.Pairs().Resume("vol1"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "every pair duplex after the restart", func() bool { return allPairsDuplex(p.Status()) })
	quiesceMover(t, p)
	waitFor(t, 20*time.Second, "the secondary's vol1 to be the primary's", func() bool { return sameVolume(t, p, s, "vol1") })
}
