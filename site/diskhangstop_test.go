package site

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
)

// TestAStopWhileTheSecondarysDiskHangsEnds: a disk that stops answering
// (the journal's fsync of a group neither returns nor fails) is reported,
// and not retried: nothing cancels the fsync, and an attempt to open again
// would wait on the same disk. But the operator's stop must end while it
// hangs, within a bound, saying that the disk hangs and what the next
// start does (replay the journal): a stop that waits for the disk keeps a
// supervisor's restart, and the operator, waiting for ever.
func TestAStopWhileTheSecondarysDiskHangsEnds(t *testing.T) {
	cfg := switchoverConfig(t)
	in := disk.NewInjector(nil)
	logs := &logBuffer{}
	var cur atomic.Pointer[Secondary]
	ended := make(chan error, 1)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	hang := make(chan struct{})
	var once sync.Once
	answer := func() { once.Do(func() { close(hang) }) }
	defer func() {
		answer()
		select {
		case <-ended:
		case <-time.After(time.Minute):
			t.Errorf("RunSecondary did not end a minute after the disk answered")
		}
	}()
	go func() {
		_, err := RunSecondary(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)), SecondaryOptions{FS: in, stopHungWait: time.Second},
			DiskRetry{First: 50 * time.Millisecond, Max: 50 * time.Millisecond},
			func(s *Secondary) { cur.Store(s) })
		ended <- err
	}()
	waitFor(t, 30*time.Second, "the secondary open", func() bool { return cur.Load() != nil })
	pcfg := *cfg
	pcfg.Primary.Secondary = cur.Load().ListenAddr()
	p, _ := startPrimary(t, &pcfg, 50*time.Millisecond)
	replicatedBeforeTheFault(t, p, cur.Load, 4096)
	in.Inject(disk.Fault{Op: disk.OpSync, Under: cfg.Secondary.Journal, Hang: hang})
	if err := p.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x22}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the journal's fsync to hang", func() bool { return in.Injected(disk.OpSync) > 0 })
	waitFor(t, 30*time.Second, "status to say the secondary waits on the disk", func() bool {
		return strings.Contains(cur.Load().Status().DiskWait, "journaling")
	})
	start := time.Now()
	stop()
	select {
	case err := <-ended:
		ended <- err
		t.Logf("RunSecondary ended %s after the stop: %v", time.Since(start).Round(time.Millisecond), err)
		if !errors.Is(err, ErrDiskHung) || !strings.Contains(err.Error(), "journaling group") || !strings.Contains(err.Error(), "replays the journal") {
			t.Errorf("RunSecondary's error does not say the disk hangs: %v", err)
		}
	case <-time.After(time.Minute):
		buf := make([]byte, 1<<20)
		t.Fatalf("RunSecondary did not end a minute after the stop, the disk hanging:\n%s", buf[:runtime.Stack(buf, true)])
	}
}

// TestAStopWhileAnAttemptToOpenAgainHangsEnds: an attempt to open the
// secondary again after a disk fault that hangs on the disk (the journal's
// fsync as it recovers) holds the operator's stop no longer than a hang
// holds the running secondary's.
func TestAStopWhileAnAttemptToOpenAgainHangsEnds(t *testing.T) {
	r := retryingForGood(t, 50*time.Millisecond)
	hang := make(chan struct{})
	defer close(hang)
	r.in.Clear()
	n := r.in.Injected(disk.OpSync)
	r.in.Inject(disk.Fault{Op: disk.OpSync, Under: r.cfg.Secondary.Journal, Hang: hang})
	waitFor(t, 30*time.Second, "an attempt to open again to hang on the journal's fsync", func() bool { return r.in.Injected(disk.OpSync) > n })
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	go r.stop()
	select {
	case err := <-r.ended:
		t.Logf("RunSecondary ended %s after the stop: %v", time.Since(start).Round(time.Millisecond), err)
		if !errors.Is(err, ErrDiskHung) {
			t.Errorf("RunSecondary's error does not say the disk hung: %v", err)
		}
	case <-time.After(SecondaryStopHungWait + 30*time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("RunSecondary did not end %s after the stop, an attempt to open again hanging:\n%s",
			SecondaryStopHungWait+30*time.Second, buf[:runtime.Stack(buf, true)])
	}
}
