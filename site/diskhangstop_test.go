package site

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/disk"
)

// TestAStopWhileTheSecondarysDiskHangsEnds: a disk that stops answering
// (the journal's fsync of a group neither returns nor fails) is reported,
// and not retried: nothing cancels the fsync, and an attempt to open again
// would wait on the same disk. But the operator's stop must end while it
// hangs, within a bound, saying that the disk hangs and what the next
// start does (replay the journal): a stop that waits for the disk keeps a
// supervisor's restart, and the operator, waiting for ever.
//
// The error names the wait that has held longest: the journaling of the
// group, or a checkpoint that began before it and whose release of the
// journal then waits behind the hung fsync. Both hold on the disk, and
// which began first is the scheduler's choice; either way status showed
// that wait before the stop.
func TestAStopWhileTheSecondarysDiskHangsEnds(t *testing.T) {
	h := hangingSecondary(t)
	start := time.Now()
	h.stop()
	select {
	case e := <-h.ended:
		h.ended <- e
		t.Logf("RunSecondary ended %s after the stop: %v", time.Since(start).Round(time.Millisecond), e.err)
		if !errors.Is(e.err, ErrDiskHung) || !strings.Contains(e.err.Error(), "replays the journal") {
			t.Errorf("RunSecondary's error does not say the disk hangs: %v", e.err)
		}
		m := hungWait.FindStringSubmatch(e.err.Error())
		if m == nil {
			t.Fatalf("RunSecondary's error names no group's wait on the disk: %v", e.err)
		}
		if !strings.Contains(h.diskWait, m[1]+": waiting on the disk") {
			t.Errorf("RunSecondary's error names %q, which status did not show waiting on the disk before the stop: %s", m[1], h.diskWait)
		}
	case <-time.After(time.Minute):
		t.Fatalf("RunSecondary did not end a minute after the stop, the disk hanging:\n%s", goroutines())
	}
}

// hanging is a secondary under RunSecondary (the stop's bound 1 s) whose
// journal's fsync of a group hangs until the test ends.
type hanging struct {
	cfg      *config.Config
	diskWait string // status's DiskWait once it named the journaling
	cur      atomic.Pointer[Secondary]
	ended    chan runEnded // RunSecondary's result, put back once read
	stop     context.CancelFunc
}

// hungWait finds what a secondary's stop with its disk hung names as
// waiting: the journaling of a group, or the checkpoint recording one
// applied.
var hungWait = regexp.MustCompile(`stopped with its disk hung: (journaling group \d+|recording group \d+ applied \([^)]*\)) has waited on the disk`)

type runEnded struct {
	s   *Secondary
	err error
}

func hangingSecondary(t *testing.T) *hanging {
	t.Helper()
	hang := make(chan struct{})
	// Released after the test's directory is removed (cleanups run last
	// first): the stop goes on without the fsync it holds, and what
	// follows it once let go (the journal's next writes) would land in
	// the directory as it is removed, and its removal fail.
	t.Cleanup(func() { close(hang) })
	h := &hanging{cfg: switchoverConfig(t), ended: make(chan runEnded, 1)}
	in := disk.NewInjector(nil)
	logs := &logBuffer{}
	ctx, stop := context.WithCancel(context.Background())
	h.stop = stop
	t.Cleanup(func() {
		stop()
		select {
		case <-h.ended:
		case <-time.After(time.Minute):
			t.Errorf("RunSecondary did not end a minute after the stop, the disk hanging")
		}
	})
	go func() {
		s, err := RunSecondary(ctx, h.cfg, slog.New(slog.NewTextHandler(logs, nil)), SecondaryOptions{FS: in, stopHungWait: time.Second},
			DiskRetry{First: 50 * time.Millisecond, Max: 50 * time.Millisecond},
			func(s *Secondary) { h.cur.Store(s) })
		h.ended <- runEnded{s, err}
	}()
	waitFor(t, 30*time.Second, "the secondary open", func() bool { return h.cur.Load() != nil })
	pcfg := *h.cfg
	pcfg.Primary.Secondary = h.cur.Load().ListenAddr()
	p, _ := startPrimary(t, &pcfg, healthyReadWait)
	replicatedBeforeTheFault(t, p, h.cur.Load, 4096)
	in.Inject(disk.Fault{Op: disk.OpSync, Under: h.cfg.Secondary.Journal, Hang: hang})
	if err := p.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x22}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the journal's fsync to hang", func() bool { return in.Injected(disk.OpSync) > 0 })
	waitFor(t, 30*time.Second, "status to say the secondary waits on the disk", func() bool {
		h.diskWait = h.cur.Load().Status().DiskWait
		return strings.Contains(h.diskWait, "journaling")
	})
	return h
}

// TestAStopWhileAnAttemptToOpenAgainHangsEnds: an attempt to open the
// secondary again after a disk fault that hangs on the disk (the journal's
// fsync as it recovers) holds the operator's stop no longer than a hang
// holds the running secondary's.
func TestAStopWhileAnAttemptToOpenAgainHangsEnds(t *testing.T) {
	hang := make(chan struct{})
	// Released after the test's directory is removed, as hangingSecondary's.
	t.Cleanup(func() { close(hang) })
	r := retryingForGood(t, 50*time.Millisecond)
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
		t.Fatalf("RunSecondary did not end %s after the stop, an attempt to open again hanging:\n%s",
			SecondaryStopHungWait+30*time.Second, goroutines())
	}
}
