package site

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"duplex/config"
	"duplex/disk"
	"duplex/nbd"
)

// TestAPromotedSitesStopEndsWithAVolumesFlushHung: the disk of vol1 at a
// promoted site stops answering; an NBD client's FLUSH of vol1 waits
// for it. The stop waits for the client's request and the volumes'
// flushes only so long, saying which volume's flush did not end (and
// none whose disk answers).
func TestAPromotedSitesStopEndsWithAVolumesFlushHung(t *testing.T) {
	h := newFlushHang()
	p, logs, stop := runPromotedSite(t, PromotedOptions{beforeFlush: h.beforeFlush, stopFlushWait: time.Second})
	t.Cleanup(h.release) // before the stop, which a hung flush may hold up
	c, err := nbd.Dial(p.NBDAddr(), "vol1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h.hung.Store(true)
	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush() }()
	select {
	case <-h.entered:
	case err := <-flushed:
		t.Fatalf("the client's FLUSH of vol1, its disk hung, returned: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("the client's FLUSH of vol1 did not reach the volume; goroutines:\n%s", goroutines())
	}
	stopGivingUp(t, stop, "vol1's flush hung")
	if len(logs.lines("vol1", "flush")) == 0 {
		t.Errorf("the stop's log does not name vol1's flush:\n%s", logs.String())
	}
	if lines := logs.lines("volume=vol2", "did not end"); len(lines) > 0 {
		t.Errorf("the stop reports vol2's flush, whose disk answers: %s", lines)
	}
	// What the stop gave up ends now, before the test's directory is
	// removed: the site lets its directory go only then.
	h.release()
	awaitPromotedDirLetGo(t, p.cfg)
}

// TestAPromotedSitesStopEndsWithAVolumesCloseHung: the disk of vol1 at a
// promoted site stops answering, its flushes and its close alike (a
// close flushes on NFS and FUSE). The stop gives the close up after its
// wait, as it does the flush, and its log names the close of vol1. The
// promotion directory's LOCK stays held until the close ends: a next
// promoted site, or the reverse direction's primary that a rejoin
// copies from, let in before then would read vol1 before what the close
// writes back lands.
func TestAPromotedSitesStopEndsWithAVolumesCloseHung(t *testing.T) {
	h := newFlushHang()
	p, logs, stop := runPromotedSite(t, PromotedOptions{beforeFlush: h.beforeFlush, beforeClose: h.beforeClose, stopFlushWait: time.Second})
	t.Cleanup(h.release) // before the stop
	h.hung.Store(true)
	h.closes.Store(true)
	stopGivingUp(t, stop, "vol1's flush and close hung")
	if len(logs.lines("close of volume vol1", "has not ended")) == 0 {
		t.Errorf("the stop's log does not name the close of vol1 given up:\n%s", logs.String())
	}
	promotedDirHeld(t, p.cfg, "vol1's close (a write-back)")
	h.release()
	awaitPromotedDirLetGo(t, p.cfg)
}

// TestAPromotedSitesStopWaitsForAVolumesWriteHung: the disk of vol1 at a
// promoted site stops answering under a client's write. The stop gives
// the write up, and vol1's close with it, and keeps the promotion
// directory's LOCK until the write has ended: the write lands whenever
// the disk answers, and a site let in meanwhile (a next promoted site,
// the reverse direction's primary copying the changed regions to the
// old primary) would read vol1 without it.
func TestAPromotedSitesStopWaitsForAVolumesWriteHung(t *testing.T) {
	p, logs, h := stoppedWithAWriteHung(t, time.Second)
	if len(logs.lines("close of volume vol1", "has not ended")) == 0 {
		t.Error("the stop's log does not name the close of vol1 given up, under its write")
	}
	promotedDirHeld(t, p.cfg, "vol1's write")
	if t.Failed() {
		t.Logf("the promoted site's log:\n%s", logs.String())
	}
	h.release()
	awaitPromotedDirLetGo(t, p.cfg)
}

// stopGivingUp stops a promoted site (stop) whose disk hangs under what,
// within 20 s, and returns the stop's error: the test fails if there is
// none, the stop having given up what.
func stopGivingUp(t *testing.T, stop func() error, what string) error {
	t.Helper()
	var err error
	within(t, 20*time.Second, "the promoted site's stop", func() { err = stop() })
	t.Logf("the stop: %v", err)
	if err == nil {
		t.Errorf("the stop, %s, returned no error", what)
	}
	return err
}

// stoppedWithAWriteHung runs a promoted site whose disk under vol1 hangs
// a client's write until h.release, and stops it, waiting up to wait for
// what is under way: the stop gives the write up. The release comes
// before the test's own cleanup of the site.
func stoppedWithAWriteHung(t *testing.T, wait time.Duration) (*Promoted, *logBuffer, *flushHang) {
	t.Helper()
	h := newFlushHang()
	p, logs, stop := runPromotedSite(t, PromotedOptions{beforeVolumeWrite: h.beforeVolumeWrite, stopFlushWait: wait})
	t.Cleanup(h.release)
	h.writes.Store(true)
	wrote := make(chan error, 1)
	go func() { wrote <- pipelinedWrites(p.NBDAddr(), "vol1", 1, 0) }()
	select {
	case err := <-wrote:
		t.Fatalf("the client's write to vol1, its disk hung, returned: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	stopGivingUp(t, stop, "vol1's write given up")
	return p, logs, h
}

// promotedDirHeld fails the test if the promotion directory's LOCK of
// the stopped promoted site of cfg is free while what (its volume's I/O)
// is under way.
func promotedDirHeld(t *testing.T, cfg *config.Config, what string) {
	t.Helper()
	l, err := disk.OS.Lock(filepath.Join(PromotedDir(cfg), "LOCK"))
	if err == nil {
		l.Close()
		t.Errorf("the stopped promoted site let its promotion directory's LOCK go with %s under way", what)
	}
}

// awaitPromotedDirLetGo waits for the stopped promoted site of cfg to let
// its promotion directory's LOCK go.
func awaitPromotedDirLetGo(t *testing.T, cfg *config.Config) {
	t.Helper()
	waitFor(t, 10*time.Second, "the stopped promoted site to let its promotion directory go", func() bool {
		l, err := disk.OS.Lock(filepath.Join(PromotedDir(cfg), "LOCK"))
		if err != nil {
			return false
		}
		l.Close()
		return true
	})
}

// TestAPromotedSiteWhoseStartFailsKeepsItsLockWhileAVolumesCloseHangs: a
// promoted site's start fails once its volumes and changed regions are
// open (its NBD address taken), and vol1's close hangs (a close flushes
// on NFS and FUSE). The start gives the close up after its wait, and
// keeps the promotion directory's LOCK until it ends, as a stop does.
func TestAPromotedSiteWhoseStartFailsKeepsItsLockWhileAVolumesCloseHangs(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	quiet := slog.New(slog.DiscardHandler)
	firstStart(t, cfg)
	if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg.Secondary.NBD = taken.Addr().String()
	h := newFlushHang()
	t.Cleanup(h.release)
	h.closes.Store(true)
	within(t, 20*time.Second, "the promoted site's failed start", func() {
		p, err := OpenPromoted(cfg, quiet, PromotedOptions{beforeClose: h.beforeClose, stopFlushWait: time.Second})
		if err == nil {
			p.close()
			t.Fatal("the promoted site started on an NBD address another listener holds")
		}
		t.Logf("the start: %v", err)
	})
	promotedDirHeld(t, cfg, "vol1's close (a write-back)")
	h.release()
	awaitPromotedDirLetGo(t, cfg)
}

// TestAPromotedSitesCleanStopLetsItsLockGoAsItReturns: a stop that gave
// nothing up lets the promotion directory's LOCK go before it returns, so
// that the reverse direction's primary opened right after it (duplex
// rejoin, a switchover, in the same process) finds it free. Repeated: the
// end of the changed regions' save and the stop's hearing of it race.
func TestAPromotedSitesCleanStopLetsItsLockGoAsItReturns(t *testing.T) {
	for i := range 40 {
		p, logs, stop := runPromotedSite(t, PromotedOptions{})
		if err := stop(); err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
		l, err := disk.OS.Lock(filepath.Join(PromotedDir(p.cfg), "LOCK"))
		if err != nil {
			t.Fatalf("stop %d returned without error, the promotion directory's LOCK still held: %v\n%s", i, err, logs.String())
		}
		l.Close()
	}
}
