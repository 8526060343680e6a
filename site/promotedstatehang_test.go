package site

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"duplex/disk"
	"duplex/nbd"
)

// TestAPromotedSitesStopEndsWithItsStateDiskHung: the disk of a promoted
// site's promotion directory (the timer's lease, the changed regions'
// bitmaps and log) stops answering. The stop waits for the timer's last
// write, and the changed regions' save after it, only so long, naming
// the write it waits for, and ends with ErrDiskHung. Once the disk answers, the site opens again with
// the region written before the hang among its changed regions.
func TestAPromotedSitesStopEndsWithItsStateDiskHung(t *testing.T) {
	h := newStateDiskHang()
	p, logs, stop := runPromotedSite(t, PromotedOptions{FS: h.fs, stopFlushWait: time.Second})
	cfg := p.cfg
	t.Cleanup(h.release) // before the stop
	c, err := nbd.Dial(p.NBDAddr(), "vol1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteAt(bytes.Repeat([]byte{0x61}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	h.hang(PromotedDir(cfg))
	if runErr := stopGivingUp(t, stop, "its state directory's disk hung"); !errors.Is(runErr, ErrDiskHung) {
		t.Errorf("the stop, its state directory's disk hung, returned %v, want ErrDiskHung", runErr)
	}
	if len(logs.lines("timer's last write", "not ended")) == 0 {
		t.Errorf("the stop's log does not name the timer's lease and the changed regions:\n%s", logs.String())
	}
	// A site let in now would read a mark or bitmaps that a write given
	// up may still replace.
	promotedDirHeld(t, cfg, "the timer's and the changed regions' writes")
	h.release()
	var again *Promoted
	waitFor(t, 10*time.Second, "the promoted site to open again once its disk answers", func() bool {
		var err error
		again, err = OpenPromoted(cfg, slog.New(slog.DiscardHandler), PromotedOptions{})
		return err == nil
	})
	defer again.close()
	if again.Changes().Bitmap("vol1").DirtyBytes() == 0 {
		t.Error("vol1's region written before the hang is not among the changed regions")
	}
}

// newStateDiskHang is a disk that answers until hung (stateDiskHang.hang).
func newStateDiskHang() *stateDiskHang {
	h := &stateDiskHang{fs: disk.NewInjector(nil), held: make(chan struct{})}
	h.release = sync.OnceFunc(func() { close(h.held) })
	return h
}

// runPromotedSite promotes the secondary of a new link config, started
// once as a daemon's first start does, and runs the promoted site, opened
// with opts, until stop, which returns what Run did.
func runPromotedSite(t *testing.T, opts PromotedOptions) (*Promoted, *logBuffer, func() error) {
	t.Helper()
	cfg := linkConfig(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	firstStart(t, cfg)
	if _, _, _, err := Promote(context.Background(), cfg, log, nil); err != nil {
		t.Fatal(err)
	}
	p, err := OpenPromoted(cfg, log, opts)
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stop := runUntil(t, func(ctx context.Context) { runErr = p.Run(ctx) })
	return p, logs, func() error { stop(); return runErr }
}
