package site

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
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
	// Made by an earlier start: a first start's waits on the making.
	if err := os.MkdirAll(PairStateDir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
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

// TestAStartOnAHungStateDiskAnswersStatus: while a site's start waits
// for its state directory's disk (the primary's, the secondary's beside
// its journal, a promoted site's promoted/), its control address
// answers: status says it starts and what it waits for, and how long; a
// command is refused "not yet: starting"; the metrics answer. Once the
// disk answers and the site runs, status is the running site's.
func TestAStartOnAHungStateDiskAnswersStatus(t *testing.T) {
	for _, tc := range []struct {
		site, role string
		dir        func(*config.Config) string
		step       string
		// open opens the site; run runs it until the test ends.
		open func(*config.Config, *stateDiskHang) (run func(*testing.T), err error)
	}{
		{"primary", "primary", PairStateDir, "timer.json", func(cfg *config.Config, h *stateDiskHang) (func(*testing.T), error) {
			p, err := OpenPrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{FS: h.fs, slowDisk: 200 * time.Millisecond})
			if err != nil {
				return nil, err
			}
			return func(t *testing.T) { t.Cleanup(runUntil(t, func(ctx context.Context) { p.Run(ctx, time.Second) })) }, nil
		}},
		// Its journal's directory: the lock beside it is taken first.
		{"secondary", "secondary", func(cfg *config.Config) string { return cfg.Secondary.Journal }, "(replaying the groups not yet applied)",
			func(cfg *config.Config, h *stateDiskHang) (func(*testing.T), error) {
				s, err := OpenSecondary(cfg, slog.New(slog.DiscardHandler), SecondaryOptions{FS: h.fs})
				if err != nil {
					return nil, err
				}
				return func(t *testing.T) { t.Cleanup(runUntil(t, func(ctx context.Context) { s.Run(ctx) })) }, nil
			}},
		// Its changed regions' log: the LOCK beside it is taken first.
		{"promoted", "primary", func(cfg *config.Config) string { return filepath.Join(PromotedDir(cfg), "changes.log") }, "the changed regions in", func(cfg *config.Config, h *stateDiskHang) (func(*testing.T), error) {
			p, err := OpenPromoted(cfg, slog.New(slog.DiscardHandler), PromotedOptions{FS: h.fs, slowDisk: 200 * time.Millisecond})
			if err != nil {
				return nil, err
			}
			return func(t *testing.T) { t.Cleanup(runUntil(t, func(ctx context.Context) { p.Run(ctx) })) }, nil
		}},
	} {
		t.Run(tc.site, func(t *testing.T) {
			cfg := linkConfig(t)
			cfg.Primary.Secondary = testenv.FreeAddr(t)
			addr := &cfg.Primary.Control
			if tc.site != "primary" {
				addr = &cfg.Secondary.Control
			}
			if tc.site == "promoted" {
				cfg.Secondary.NBD = "127.0.0.1:0"
				firstStart(t, cfg)
				if _, _, _, err := Promote(context.Background(), cfg, slog.New(slog.DiscardHandler), nil); err != nil {
					t.Fatal(err)
				}
			}
			*addr = testenv.FreeAddr(t)
			at := control.Endpoint{Addr: *addr}
			if tc.site == "primary" {
				// Made by an earlier start: a first start's waits on the making.
				if err := os.MkdirAll(PairStateDir(cfg), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			h := newStateDiskHang()
			t.Cleanup(h.release)
			h.hang(tc.dir(cfg))
			opened := make(chan func(*testing.T), 1)
			go func() {
				run, err := tc.open(cfg, h)
				if err != nil {
					t.Error(err)
				}
				opened <- run
			}()
			fetch := func() (control.Status, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return control.Fetch(ctx, at)
			}
			var st control.Status
			var err error
			waitFor(t, 10*time.Second, "the starting site's status to name the write it waits for", func() bool {
				st, err = fetch()
				return err == nil && st.Starting != nil && strings.Contains(st.Starting.Step, tc.step) && st.Starting.StepSeconds > 0
			})
			t.Logf("status: role %s, link %s, starting %+v", st.Role, st.Link, *st.Starting)
			if st.Role != tc.role || st.Session != cfg.Session {
				t.Errorf("the starting site's status says role %q, session %q", st.Role, st.Session)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := control.PairOp(ctx, at, "", "vol1", "suspend", false); err == nil || !strings.Contains(err.Error(), "not yet: starting") {
				t.Errorf("a pair suspend at the starting site: %v, want a refusal saying not yet: starting", err)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+at.Addr+"/metrics", nil)
			if resp, err := http.DefaultClient.Do(req); err != nil {
				t.Errorf("metrics at the starting site: %v", err)
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "duplex_starting") {
					t.Errorf("metrics at the starting site: %s, without duplex_starting:\n%.2000s", resp.Status, b)
				}
			}
			h.release()
			var run func(*testing.T)
			select {
			case run = <-opened:
			case <-time.After(20 * time.Second):
				t.Fatal("the start has not ended 20s after the disk answered")
			}
			if run == nil {
				t.FailNow()
			}
			run(t)
			waitFor(t, 10*time.Second, "the running site's status", func() bool {
				st, err = fetch()
				return err == nil && st.Starting == nil && len(st.Volumes) > 0
			})
		})
	}
}
