package site

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/disk"
	"duplex/internal/testenv"
)

// TestAStartOnAHungStateDiskEndsWithItsContext: the disk of a site's
// state directory (the primary's, a promoted site's promoted/, a
// secondary's journal) does not
// answer as the site starts, and the start is asked to stop (its
// context, which SIGTERM ends): the start returns at once, saying it
// stopped while starting and what it waited for. Once the disk
// answers, the start left in the background serves nothing and lets
// the state directory go: a next start takes it and runs.
func TestAStartOnAHungStateDiskEndsWithItsContext(t *testing.T) {
	for _, tc := range []struct {
		site string
		dir  func(*config.Config) string
		step string
		// open opens the site until ctx ends, its disk h's (nil: the
		// OS's), and returns its run and its close.
		open func(ctx context.Context, cfg *config.Config, h *stateDiskHang, log *slog.Logger) (run func(context.Context), close func(), err error)
		// quiet: the start does not say in its log that it waits on its
		// disk (a secondary's replay may take long): the hang's count
		// tells.
		quiet bool
	}{
		{"primary", PairStateDir, "timer.json", func(ctx context.Context, cfg *config.Config, h *stateDiskHang, log *slog.Logger) (func(context.Context), func(), error) {
			opts := PrimaryOptions{slowDisk: 200 * time.Millisecond, Context: ctx}
			if h != nil {
				opts.FS = h.fs
			}
			p, err := OpenPrimary(cfg, log, opts)
			if err != nil {
				return nil, nil, err
			}
			return func(ctx context.Context) { p.Run(ctx, time.Second) }, func() { p.close() }, nil
		}, false},
		{"promoted", func(cfg *config.Config) string { return filepath.Join(PromotedDir(cfg), "changes.log") }, "the changed regions in",
			func(ctx context.Context, cfg *config.Config, h *stateDiskHang, log *slog.Logger) (func(context.Context), func(), error) {
				opts := PromotedOptions{slowDisk: 200 * time.Millisecond, Context: ctx}
				if h != nil {
					opts.FS = h.fs
				}
				p, err := OpenPromoted(cfg, log, opts)
				if err != nil {
					return nil, nil, err
				}
				return func(ctx context.Context) { p.Run(ctx) }, func() { p.close() }, nil
			}, false},
		{"secondary", func(cfg *config.Config) string { return cfg.Secondary.Journal }, "the journal",
			func(ctx context.Context, cfg *config.Config, h *stateDiskHang, log *slog.Logger) (func(context.Context), func(), error) {
				opts := SecondaryOptions{Context: ctx}
				if h != nil {
					opts.FS = h.fs
				}
				s, err := OpenSecondary(cfg, log, opts)
				if err != nil {
					return nil, nil, err
				}
				return func(ctx context.Context) { s.Run(ctx) }, func() { s.close() }, nil
			}, true},
	} {
		t.Run(tc.site, func(t *testing.T) {
			cfg := linkConfig(t)
			cfg.Primary.Secondary = testenv.FreeAddr(t)
			if tc.site == "promoted" {
				cfg.Secondary.NBD = "127.0.0.1:0"
				firstStart(t, cfg)
				if _, _, _, err := Promote(context.Background(), cfg, slog.New(slog.DiscardHandler), nil); err != nil {
					t.Fatal(err)
				}
			} else if err := os.MkdirAll(PairStateDir(cfg), 0o755); err != nil {
				t.Fatal(err)
			}
			h := newStateDiskHang()
			t.Cleanup(h.release)
			h.hang(tc.dir(cfg))
			logs := &logBuffer{}
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			opened := make(chan error, 1)
			go func() {
				_, closeIt, err := tc.open(ctx, cfg, h, slog.New(slog.NewTextHandler(logs, nil)))
				if closeIt != nil {
					t.Error("a start given up returned its site")
					closeIt()
				}
				opened <- err
			}()
			waitFor(t, 10*time.Second, "the start to wait on its disk", func() bool {
				if tc.quiet {
					return hungOps(h) > 0
				}
				return len(logs.lines("starting", "waited")) > 0
			})
			stop()
			bound := 2 * time.Second
			if tc.site == "secondary" {
				bound += SecondaryStartStopGrace
			}
			select {
			case err := <-opened:
				t.Logf("the start asked to stop: %v", err)
				if err == nil || !strings.Contains(err.Error(), "stopped while starting") || !strings.Contains(err.Error(), tc.step) {
					t.Errorf("the start asked to stop: %v, want it stopped while starting, naming %s", err, tc.step)
				}
			case <-time.After(bound):
				t.Fatalf("the start on a hung disk has not returned %s after asked to stop", bound)
			}
			h.release()
			var run func(context.Context)
			waitFor(t, 10*time.Second, "a next start, once the disk answered", func() bool {
				var err error
				run, _, err = tc.open(context.Background(), cfg, nil, slog.New(slog.DiscardHandler))
				return err == nil
			})
			runUntil(t, run)()
		})
	}
}

// hungOps is how many operations h's hang has held.
func hungOps(h *stateDiskHang) int {
	n := 0
	for op := disk.OpWrite; op <= disk.OpRead; op++ {
		n += h.fs.Injected(op)
	}
	return n
}
