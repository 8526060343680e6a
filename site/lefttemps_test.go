package site

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"duplex/config"
)

// TestAStartRemovesTheTemporaryFilesAKillLeft: a kill -9 during an atomic
// write of a state file leaves its temporary file (TARGET.tmpDIGITS)
// behind. A start of each site, once its lock is held, removes those of
// its state directory, and says so in its log; a file of any other name
// stays.
func TestAStartRemovesTheTemporaryFilesAKillLeft(t *testing.T) {
	for _, tc := range []struct {
		site  string
		dir   func(*config.Config) string
		left  []string
		start func(*testing.T, *config.Config, *slog.Logger) func()
	}{
		{"primary", PairStateDir, []string{"pairs.json.tmp1234567", "vol1.bitmap.tmp42", "timer.json.tmp4294967295"},
			func(t *testing.T, cfg *config.Config, log *slog.Logger) func() {
				cfg.Primary.Secondary = "127.0.0.1:1"
				p, err := OpenPrimary(cfg, log, PrimaryOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return func() { p.actlog.Close(); p.close() }
			}},
		{"secondary", func(cfg *config.Config) string { return filepath.Dir(StatePath(cfg)) }, []string{"state.json.tmp99", "identity.json.tmp3"},
			func(t *testing.T, cfg *config.Config, log *slog.Logger) func() {
				s, err := OpenSecondary(cfg, log, SecondaryOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return s.Close
			}},
		{"promoted", PromotedDir, []string{"vol1.bitmap.tmp5", "timer.json.tmp6"},
			func(t *testing.T, cfg *config.Config, log *slog.Logger) func() {
				p, err := OpenPromoted(cfg, log, PromotedOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return func() { p.close() }
			}},
	} {
		t.Run(tc.site, func(t *testing.T) {
			cfg := linkConfig(t)
			if tc.site == "promoted" {
				cfg.Secondary.NBD = "127.0.0.1:0"
				firstStart(t, cfg)
				if _, _, _, err := Promote(context.Background(), cfg, slog.New(slog.DiscardHandler), nil); err != nil {
					t.Fatal(err)
				}
			}
			dir := tc.dir(cfg)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			kept := []string{"notes.tmp123", "pairs.json.tmp", "state.json.tmpx", "timer.json.tmp1.bak"}
			for _, name := range append(kept, tc.left...) {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("{"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			logs := &logBuffer{}
			stop := tc.start(t, cfg, slog.New(slog.NewTextHandler(logs, nil)))
			defer stop()
			for _, name := range tc.left {
				if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s left by a write cut short is still there after the start (%v)", name, err)
				}
				if len(logs.lines("removed", name)) == 0 {
					t.Errorf("the start's log does not name %s as removed", name)
				}
			}
			for _, name := range kept {
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
					t.Errorf("%s, not a temporary file of the state's writes, is gone: %v", name, err)
				}
			}
			if t.Failed() {
				t.Logf("log:\n%s", logs.String())
			}
		})
	}
}
