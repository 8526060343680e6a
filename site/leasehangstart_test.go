package site

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
	"duplex/internal/testenv"
	"duplex/timer"
)

// leaseHangFS is a disk whose writes of the timer's lease, after the
// first, wait until held is closed, and whose first one moves the
// clock (jump) past the lease it writes: every stamp taken after it
// waits for the next write.
type leaseHangFS struct {
	disk.FS
	writes atomic.Int64
	jump   func()
	held   chan struct{}
}

func (f *leaseHangFS) CreateTemp(dir, pattern string) (disk.File, error) {
	if strings.HasPrefix(pattern, "timer.json") {
		if f.writes.Add(1) == 1 {
			f.jump()
		} else {
			<-f.held
		}
	}
	return f.FS.CreateTemp(dir, pattern)
}

// TestAPrimaryStartWhoseMarkersWaitForAHungLeaseFailsNamingIt: the
// timer's lease stops being written as a primary starts for the first
// time, once its first write is done: the first copies' markers, which
// the start stamps before it serves, wait for it. The start fails
// within a bounded time, naming the lease's file, without saving a pair
// state or serving; once the disk answers, a next start runs.
func TestAPrimaryStartWhoseMarkersWaitForAHungLeaseFailsNamingIt(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Primary.Secondary = testenv.FreeAddr(t)
	var off atomic.Int64
	held := make(chan struct{})
	release := sync.OnceFunc(func() { close(held) })
	t.Cleanup(release)
	fsys := &leaseHangFS{FS: disk.OS, held: held, jump: func() { off.Add(int64(3 * time.Second)) }}
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the primary's log:\n%s", logs.String())
		}
	})
	opened := make(chan error, 1)
	start := time.Now()
	go func() {
		p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(logs, nil)), PrimaryOptions{FS: fsys, slowDisk: 200 * time.Millisecond,
			Clock: func() int64 { return time.Now().UnixNano() + off.Load() }})
		if p != nil {
			p.close()
		}
		opened <- err
	}()
	var err error
	select {
	case err = <-opened:
	case <-time.After(10 * time.Second):
		release()
		t.Fatal("the start whose markers wait for the hung lease has not ended after 10 s")
	}
	t.Logf("the start, after %s: %v", time.Since(start).Round(time.Millisecond), err)
	var lh *timer.LeaseHungError
	if !errors.As(err, &lh) || !strings.Contains(err.Error(), filepath.Join(PairStateDir(cfg), "timer.json")) {
		t.Errorf("the start: %v, want the lease's error naming its file", err)
	}
	if _, err := os.Stat(filepath.Join(PairStateDir(cfg), "pairs.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the start that failed saved a pair state (%v)", err)
	}
	release()
	var p *Primary
	waitFor(t, 10*time.Second, "a next start, once the disk answered", func() bool {
		p, err = OpenPrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{})
		return err == nil
	})
	runUntil(t, func(ctx context.Context) { p.Run(ctx, time.Second) })()
}

// dirHangFS is a disk whose first rename onto the timer's lease arms
// arm: the whole state directory's disk stops answering from then on.
type dirHangFS struct {
	*disk.Injector
	renames atomic.Int64
	arm     func()
}

func (f *dirHangFS) Rename(oldpath, newpath string) error {
	err := f.Injector.Rename(oldpath, newpath)
	if filepath.Base(newpath) == "timer.json" && f.renames.Add(1) == 1 {
		f.arm()
	}
	return err
}

// TestAPrimaryStartOnAStateDiskHungUnderItsMarkersFailsNamingTheLease:
// the whole disk of the state directory stops answering as a primary
// starts for the first time, once the timer's lease is first written:
// the first copies' markers wait for the lease, and then the start's
// own undoing (the activity log's close) would wait for the disk too.
// The start fails within a bounded time all the same, naming the
// lease's file.
func TestAPrimaryStartOnAStateDiskHungUnderItsMarkersFailsNamingTheLease(t *testing.T) {
	// Released after the test's directory is removed (cleanups run last
	// first): the writes the hang held, let go, would otherwise land in
	// it as it is removed, and its removal fail.
	held := make(chan struct{})
	release := sync.OnceFunc(func() { close(held) })
	t.Cleanup(release)
	cfg := linkConfig(t)
	cfg.Primary.Secondary = testenv.FreeAddr(t)
	var off atomic.Int64
	in := disk.NewInjector(nil)
	fsys := &dirHangFS{Injector: in, arm: func() {
		off.Add(int64(3 * time.Second))
		for _, op := range []disk.Op{disk.OpWrite, disk.OpSync} {
			in.Inject(disk.Fault{Op: op, Under: PairStateDir(cfg), Hang: held})
		}
	}}
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the primary's log:\n%s", logs.String())
		}
	})
	opened := make(chan error, 1)
	start := time.Now()
	go func() {
		p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(logs, nil)), PrimaryOptions{FS: fsys, slowDisk: 200 * time.Millisecond,
			stopFlushWait: 500 * time.Millisecond, Clock: func() int64 { return time.Now().UnixNano() + off.Load() }})
		if p != nil {
			p.close()
		}
		opened <- err
	}()
	var err error
	select {
	case err = <-opened:
	case <-time.After(10 * time.Second):
		release()
		t.Fatal("the start on a state disk hung under its markers has not ended after 10 s")
	}
	t.Logf("the start, after %s: %v", time.Since(start).Round(time.Millisecond), err)
	var lh *timer.LeaseHungError
	if !errors.As(err, &lh) || !strings.Contains(err.Error(), filepath.Join(PairStateDir(cfg), "timer.json")) {
		t.Errorf("the start: %v, want the lease's error naming its file", err)
	}
}
