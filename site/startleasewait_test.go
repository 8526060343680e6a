package site

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/disk"
	"duplex/failover"
	"duplex/internal/testenv"
)

// startOnAHungLease starts a primary of a new session whose start's
// markers (the first copies' announcements) wait for the write of the
// timer's lease, hung: once the start reads its pair state, the clock
// runs a minute ahead, past the lease's mark, so that every stamp waits
// for the lease's next write, and the state directory's disk stops
// taking writes. slow is the start's wait on its disk (the lease's
// among them); ctx its context. It returns the start's steps, once the
// markers wait, and what the start returns, once it does.
func startOnAHungLease(t *testing.T, ctx context.Context, slow time.Duration) (*config.Config, *startWait, <-chan error) {
	t.Helper()
	// Released after the test's directory is removed (cleanups run last
	// first): the writes the hang held, let go, would otherwise land in
	// it as it is removed, and its removal fail.
	h := newStateDiskHang()
	t.Cleanup(h.release)
	cfg := linkConfig(t)
	cfg.Primary.Secondary = testenv.FreeAddr(t)
	dir := PairStateDir(cfg)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var steps atomic.Pointer[startWait]
	var ahead atomic.Bool
	clock := func() int64 {
		now := time.Now().UnixNano()
		if ahead.Load() {
			return now + int64(time.Minute)
		}
		if w := steps.Load(); w != nil {
			w.mu.Lock()
			reading := strings.HasPrefix(w.what, "the pair state in ")
			w.mu.Unlock()
			if reading && ahead.CompareAndSwap(false, true) {
				h.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: dir, Hang: h.held})
				return now + int64(time.Minute)
			}
		}
		return now
	}
	opened := make(chan error, 1)
	go func() {
		p, err := OpenPrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{FS: h.fs, Clock: clock, slowDisk: slow, Context: ctx,
			underStateLock: func(w *startWait) (*failover.Promotion, error) {
				steps.Store(w)
				return nil, nil
			}})
		if p != nil {
			t.Error("a start whose markers wait for a hung lease returned a primary")
			p.close()
		}
		opened <- err
	}()
	waitFor(t, 10*time.Second, "the start's markers to wait for the lease", func() bool {
		w := steps.Load()
		return ahead.Load() && w != nil && w.stepTaken() > 0
	})
	return cfg, steps.Load(), opened
}

// TestAStartWhoseMarkersWaitForAHungLeaseSaysSo: a primary's start whose
// markers wait for the write of the timer's lease, its disk hung, says
// that it waits for the lease, naming its file, in its status while it
// waits, and, asked to stop (SIGTERM) meanwhile, in what it returns; or,
// left to wait, fails once the wait for the lease has taken the disk's
// wait, naming the lease's file too.
func TestAStartWhoseMarkersWaitForAHungLeaseSaysSo(t *testing.T) {
	t.Run("asked to stop", func(t *testing.T) {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		cfg, w, opened := startOnAHungLease(t, ctx, 5*time.Second)
		lease := PairStateDir(cfg) + "/timer.json"
		var step string
		waitFor(t, 3*time.Second, "the status to name the timer's lease", func() bool {
			step = w.status(cfg.Session, "primary").Starting.Step
			return strings.Contains(step, lease)
		})
		t.Logf("the status's step while the markers wait: %s", step)
		stop()
		select {
		case err := <-opened:
			t.Logf("the start asked to stop: %v", err)
			if err == nil || !strings.Contains(err.Error(), "stopped while starting") || !strings.Contains(err.Error(), lease) {
				t.Errorf("the start asked to stop while its markers wait for the lease: %v, want it stopped while starting, naming %s", err, lease)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("the start has not returned 2 s after asked to stop")
		}
	})
	t.Run("left to wait", func(t *testing.T) {
		const slow = 300 * time.Millisecond
		cfg, _, opened := startOnAHungLease(t, context.Background(), slow)
		lease := PairStateDir(cfg) + "/timer.json"
		select {
		case err := <-opened:
			t.Logf("the start: %v", err)
			if err == nil || !strings.Contains(err.Error(), "the timer's lease") || !strings.Contains(err.Error(), lease) {
				t.Errorf("the start whose markers wait for a hung lease: %v, want it failed naming %s", err, lease)
			}
		case <-time.After(slow + 5*time.Second):
			t.Fatal("the start whose markers wait for a hung lease has not failed (it waits on its disk after failing?)")
		}
	})
}

// TestAStartWhoseRecoveryCopiesWaitForAHungLeaseFails: after a crash
// with writes acknowledged and never shipped, a primary's start copies
// the regions its activity log marked; the write of the timer's lease
// hangs (its rename) once the recovery's resync marker is stamped, and
// the copy's stamp, taken holding its subsystem's ordering lock, waits
// for it. The
// start fails once the wait for the lease has taken the disk's wait,
// naming the lease's file, not a wait for the volumes' close later (it
// served nothing: no write is under way to end); and the next start,
// once the disk answers, copies the regions again.
func TestAStartWhoseRecoveryCopiesWaitForAHungLeaseFails(t *testing.T) {
	cfg := linkConfig(t)
	s, dialer := crashWithUnshippedWrites(t, cfg, "vol1")
	dir := PairStateDir(cfg)
	h := newStateDiskHang()
	t.Cleanup(h.release)
	// Once the start has stamped the recovery's resync marker (its first
	// stamp reading the pair state), the clock runs a minute ahead, past
	// the lease's mark, and the lease's rename hangs: the copies' stamps
	// wait for it.
	var steps atomic.Pointer[startWait]
	var ahead atomic.Bool
	var reads atomic.Int32
	clock := func() int64 {
		now := time.Now().UnixNano()
		if ahead.Load() {
			return now + int64(time.Minute)
		}
		if w := steps.Load(); w != nil {
			w.mu.Lock()
			reading := strings.HasPrefix(w.what, "the pair state in ")
			w.mu.Unlock()
			if reading && reads.Add(1) == 2 {
				h.fs.Inject(disk.Fault{Op: disk.OpRename, Under: filepath.Join(dir, "timer.json"), Hang: h.held})
				ahead.Store(true)
				return now + int64(time.Minute)
			}
		}
		return now
	}
	const slow = 300 * time.Millisecond
	opened := make(chan error, 1)
	go func() {
		p, err := OpenPrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{FS: h.fs, Clock: clock, slowDisk: slow, Dialer: dialer,
			underStateLock: func(w *startWait) (*failover.Promotion, error) {
				steps.Store(w)
				return nil, nil
			}})
		if p != nil {
			t.Error("a start whose recovery's copies wait for a hung lease returned a primary")
			p.close()
		}
		opened <- err
	}()
	began := time.Now()
	select {
	case err := <-opened:
		t.Logf("the start, after %s: %v", time.Since(began).Round(time.Millisecond), err)
		if !ahead.Load() {
			t.Fatal("the start copied no recovered region")
		}
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "timer.json")) {
			t.Errorf("the start whose recovery's copies wait for a hung lease: %v, want it failed naming the lease", err)
		}
	case <-time.After(slow + 5*time.Second):
		t.Errorf("the start whose recovery's copies wait for a hung lease has not failed %s after it began", time.Since(began).Round(time.Millisecond))
		h.release()
		<-opened
	}
	h.release()
	var p *Primary
	waitFor(t, 40*time.Second, "a next start, once the disk answered", func() bool {
		var err error
		p, err = OpenPrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{Dialer: dialer})
		return err == nil
	})
	stop := runUntil(t, func(ctx context.Context) { p.Run(ctx, time.Second) })
	defer stop()
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	quiesceMover(t, p)
	waitFor(t, 30*time.Second, "the secondary's vol1 to be the primary's", func() bool { return sameVolume(t, p, s, "vol1") })
}
