package site

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/disk"
)

// lateMark stands in for a write held before it is captured (its
// region's mark waiting for a hung disk, the sidefile full) that goes on
// just as the stop closes its volume: vol1's close lets it go (answer)
// and waits a while for the write to reach vol1, where it then hangs (its
// pwrite in the kernel, vol1's disk hung too) until released.
type lateMark struct {
	answer   func()
	armed    atomic.Bool // hangs vol1's writes from then on
	reached  chan struct{}
	reach    sync.Once
	released chan struct{}
	release  func()
}

func newLateMark() *lateMark {
	m := &lateMark{reached: make(chan struct{}), released: make(chan struct{})}
	m.release = sync.OnceFunc(func() { close(m.released) })
	return m
}

func (m *lateMark) beforeClose(vol string) {
	if vol != "vol1" {
		return
	}
	m.answer()
	select {
	case <-m.reached:
	case <-time.After(3 * time.Second):
	}
}

func (m *lateMark) beforeVolumeWrite(vol string) {
	if vol != "vol1" || !m.armed.Load() {
		return
	}
	m.reach.Do(func() { close(m.reached) })
	<-m.released
}

// lockFreeUnderTheWrite fails the test if the LOCK at path is let go
// (within a few seconds of the stop) while the late write is under way.
func (m *lateMark) lockFreeUnderTheWrite(t *testing.T, path string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		l, err := disk.OS.Lock(path)
		if err != nil {
			continue
		}
		l.Close()
		select {
		case <-m.reached:
			t.Errorf("the stopped site let %s go with vol1's write, let go on as vol1 closed, under way", path)
		default:
		}
		return
	}
}

// TestAPromotedSitesStopKeepsItsLockFromAWriteMarkedAsItsVolumeCloses: a
// client's write to vol1 waits for its region's mark in the changed
// regions' log (the promotion directory's disk hung) as the promoted site
// stops, and the mark ends, the disk answering, just as the stop closes
// vol1. The write must not reach vol1 with the promotion directory's LOCK
// let go: a site let in then (a next promoted site, the reverse
// direction's primary whose rejoin copies the changed regions to the old
// primary) reads vol1 before the write lands.
func TestAPromotedSitesStopKeepsItsLockFromAWriteMarkedAsItsVolumeCloses(t *testing.T) {
	h := newStateDiskHang()
	m := newLateMark()
	m.answer = h.release
	m.armed.Store(true)
	p, logs, stop := runPromotedSite(t, PromotedOptions{FS: h.fs, beforeClose: m.beforeClose, beforeVolumeWrite: m.beforeVolumeWrite,
		stopFlushWait: time.Second})
	cfg := p.cfg
	t.Cleanup(m.release)
	t.Cleanup(h.release) // before the stop
	h.hang(PromotedDir(cfg))
	go pipelinedWrites(p.NBDAddr(), "vol1", 1, 0)
	waitFor(t, 10*time.Second, "the write to vol1 to wait for its region's mark", func() bool {
		_, waiting := p.changes.Waits()
		return waiting > 0
	})
	var runErr error
	within(t, 30*time.Second, "the promoted site's stop", func() { runErr = stop() })
	t.Logf("the stop: %v", runErr)
	m.lockFreeUnderTheWrite(t, filepath.Join(PromotedDir(cfg), "LOCK"))
	if t.Failed() {
		t.Logf("the promoted site's log:\n%s", logs.String())
	}
	m.release()
	awaitPromotedDirLetGo(t, cfg)
}

// TestAStoppedPrimaryKeepsItsLockFromAWriteHeldAsItsVolumeCloses: the
// same at a primary, the write to vol1 held by the sidefile, full, until
// the stop closes vol1: a next primary let in before the write lands
// copies vol1's marked regions to the secondary without it, and the
// write then changes the primary's vol1 alone.
func TestAStoppedPrimaryKeepsItsLockFromAWriteHeldAsItsVolumeCloses(t *testing.T) {
	old := actlog.Idle
	actlog.Idle = time.Hour // vol1's region stays marked: the held write needs no log write
	t.Cleanup(func() { actlog.Idle = old })
	cfg, _, dialer := linkedSecondary(t)
	m := newLateMark()
	logs := &logBuffer{}
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(logs, nil)), PrimaryOptions{Dialer: dialer, CopyReadWait: healthyReadWait,
		beforeClose: m.beforeClose, beforeVolumeWrite: m.beforeVolumeWrite, stopFlushWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stop := runUntil(t, func(ctx context.Context) { runErr = p.Run(ctx, 10*time.Second) })
	t.Cleanup(m.release) // before the stop
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	if err := p.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x61}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	quiesceMover(t, p)
	side := p.byVol["vol1"].Sidefile()
	full := side.Limit()
	side.Take(full)
	var once sync.Once
	m.answer = func() { once.Do(func() { side.Release(full) }) }
	t.Cleanup(m.answer)
	m.armed.Store(true)
	go p.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x62}, 4096), 0)
	waitFor(t, 10*time.Second, "the write to vol1 to wait for the sidefile's room", func() bool { return side.Stats().Waiting > 0 })
	within(t, 30*time.Second, "the primary's stop", func() { stop() })
	t.Logf("the stop: %v", runErr)
	m.lockFreeUnderTheWrite(t, filepath.Join(PairStateDir(cfg), stateLockName))
	if t.Failed() {
		t.Logf("the primary's log:\n%s", logs.String())
	}
	m.release()
	awaitStateDirLetGo(t, cfg)
}
