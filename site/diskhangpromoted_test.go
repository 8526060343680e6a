package site

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
	"duplex/failover"
)

// TestAPromotionMetByAStopWhileTheDiskHangsIsReported: a switchover's
// promotion in place that took effect as the operator's stop came, the
// close then hanging on the disk, ends Run with both: the promotion
// (PromotedError, which the daemon reports and whose kept listeners it
// closes) and the hang (ErrDiskHung). The primary has handed over: an
// error that says only that the disk hung, and that the next start
// replays the journal, hides that this site is the session's primary now.
func TestAPromotionMetByAStopWhileTheDiskHangsIsReported(t *testing.T) {
	cfg := switchoverConfig(t)
	in := disk.NewInjector(nil)
	logs := &logBuffer{}
	var cur atomic.Pointer[Secondary]
	type ended struct {
		s   *Secondary
		err error
	}
	done := make(chan ended, 1)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	hang := make(chan struct{})
	var once sync.Once
	answer := func() { once.Do(func() { close(hang) }) }
	defer answer()
	go func() {
		s, err := RunSecondary(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)), SecondaryOptions{FS: in, stopHungWait: time.Second},
			DiskRetry{First: 50 * time.Millisecond, Max: 50 * time.Millisecond},
			func(s *Secondary) { cur.Store(s) })
		done <- ended{s, err}
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
	waitFor(t, 30*time.Second, "status to say the secondary waits on the disk", func() bool {
		return strings.Contains(cur.Load().Status().DiskWait, "journaling")
	})
	// The promotion took effect as the stop came (see Run: one under way
	// when the stop began is the caller's to learn).
	cur.Load().promoted <- failover.Promotion{Session: cfg.Session, At: time.Now().UnixNano()}
	stop()
	var e ended
	select {
	case e = <-done:
	case <-time.After(time.Minute):
		t.Fatal("RunSecondary did not end a minute after the stop, the disk hanging")
	}
	if e.s != nil {
		e.s.HandOver().Close()
	}
	var promoted *PromotedError
	if !errors.As(e.err, &promoted) {
		t.Errorf("RunSecondary's error does not say the site was promoted: %v", e.err)
	}
	if !errors.Is(e.err, ErrDiskHung) {
		t.Errorf("RunSecondary's error does not say the disk hung: %v", e.err)
	}
}
