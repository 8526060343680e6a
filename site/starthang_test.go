package site

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"duplex/internal/testenv"
)

// TestAStartOnAHungStateDiskSaysWhatItWaitsFor: the disk of the primary's
// state directory does not answer as the primary starts, before its
// control address is up. Once a write has waited slowDisk, the start's
// log names the file and the wait; once the disk answers, the primary
// starts.
func TestAStartOnAHungStateDiskSaysWhatItWaitsFor(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Primary.Secondary = testenv.FreeAddr(t)
	h := newStateDiskHang()
	t.Cleanup(h.release)
	h.hang(PairStateDir(cfg))
	logs := &logBuffer{}
	opened := make(chan *Primary, 1)
	go func() {
		p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(logs, nil)), PrimaryOptions{FS: h.fs, slowDisk: 200 * time.Millisecond})
		if err != nil {
			t.Error(err)
		}
		opened <- p
	}()
	waitFor(t, 10*time.Second, "the start's log to name the write it waits for", func() bool {
		return len(logs.lines("starting", "timer.json", "waited")) > 0
	})
	t.Logf("%s", logs.lines("starting", "timer.json")[0])
	h.release()
	var p *Primary
	select {
	case p = <-opened:
	case <-time.After(10 * time.Second):
		t.Fatal("the start has not ended 10s after the disk answered")
	}
	if p == nil {
		t.FailNow()
	}
	stop := runUntil(t, func(ctx context.Context) { p.Run(ctx, time.Second) })
	stop()
}
