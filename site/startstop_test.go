package site

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"duplex/internal/testenv"
)

// TestAStartOnAHungStateDiskEndsWithItsContext: the disk of the
// primary's state directory does not answer as the primary starts, and
// the start is asked to stop (its context, which SIGTERM ends): the
// start returns at once, saying it stopped while starting and what it
// waited for. Once the disk answers, the start left in the background
// serves nothing and lets the state directory go: a next start takes
// it and runs.
func TestAStartOnAHungStateDiskEndsWithItsContext(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Primary.Secondary = testenv.FreeAddr(t)
	if err := os.MkdirAll(PairStateDir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	h := newStateDiskHang()
	t.Cleanup(h.release)
	h.hang(PairStateDir(cfg))
	logs := &logBuffer{}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	opened := make(chan error, 1)
	go func() {
		p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(logs, nil)), PrimaryOptions{FS: h.fs, slowDisk: 200 * time.Millisecond, Context: ctx})
		if p != nil {
			t.Error("a start given up returned a primary")
			p.close()
		}
		opened <- err
	}()
	waitFor(t, 10*time.Second, "the start to wait on timer.json", func() bool {
		return len(logs.lines("starting", "timer.json", "waited")) > 0
	})
	stop()
	select {
	case err := <-opened:
		t.Logf("the start asked to stop: %v", err)
		if err == nil || !strings.Contains(err.Error(), "stopped while starting") || !strings.Contains(err.Error(), "timer.json") {
			t.Errorf("the start asked to stop: %v, want it stopped while starting, naming timer.json", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the start on a hung disk has not returned 2 s after asked to stop")
	}
	h.release()
	var p *Primary
	waitFor(t, 10*time.Second, "a next start, once the disk answered", func() bool {
		var err error
		p, err = OpenPrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{})
		return err == nil
	})
	stop2 := runUntil(t, func(ctx context.Context) { p.Run(ctx, time.Second) })
	stop2()
}
