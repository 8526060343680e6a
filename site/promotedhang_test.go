package site

import (
	"testing"
	"time"

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
	var runErr error
	within(t, 20*time.Second, "the promoted site's stop", func() { runErr = stop() })
	t.Logf("the stop: %v", runErr)
	if runErr == nil {
		t.Error("the stop, vol1's flush hung, returned no error")
	}
	if len(logs.lines("vol1", "flush")) == 0 {
		t.Errorf("the stop's log does not name vol1's flush:\n%s", logs.String())
	}
	if lines := logs.lines("volume=vol2", "did not end"); len(lines) > 0 {
		t.Errorf("the stop reports vol2's flush, whose disk answers: %s", lines)
	}
}

// TestAPromotedSitesStopEndsWithAVolumesCloseHung: the disk of vol1 at a
// promoted site stops answering, its flushes and its close alike (a
// close flushes on NFS and FUSE). The stop gives the close up after its
// wait, as it does the flush, and its log names the close of vol1.
func TestAPromotedSitesStopEndsWithAVolumesCloseHung(t *testing.T) {
	h := newFlushHang()
	_, logs, stop := runPromotedSite(t, PromotedOptions{beforeFlush: h.beforeFlush, beforeClose: h.beforeClose, stopFlushWait: time.Second})
	t.Cleanup(h.release) // before the stop
	h.hung.Store(true)
	h.closes.Store(true)
	var runErr error
	within(t, 20*time.Second, "the promoted site's stop", func() { runErr = stop() })
	t.Logf("the stop: %v", runErr)
	if runErr == nil {
		t.Error("the stop, vol1's flush and close hung, returned no error")
	}
	if len(logs.lines("close of volume vol1", "has not ended")) == 0 {
		t.Errorf("the stop's log does not name the close of vol1 given up:\n%s", logs.String())
	}
}
