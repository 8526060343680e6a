package site

import (
	"context"
	"log/slog"
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
	cfg := linkConfig(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	if _, _, _, err := Promote(context.Background(), cfg, log, nil); err != nil {
		t.Fatal(err)
	}
	h := newFlushHang()
	p, err := OpenPromoted(cfg, log, PromotedOptions{beforeFlush: h.beforeFlush, stopFlushWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stop := runUntil(t, func(ctx context.Context) { runErr = p.Run(ctx) })
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
		t.Fatal("the client's FLUSH of vol1 did not reach the volume")
	}
	within(t, 20*time.Second, "the promoted site's stop", stop)
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
