package site

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"duplex/config"
	"duplex/disk"
)

// A promoted site's start that fails at a step after it took the
// promotion directory's LOCK (the changed regions damaged, the control
// token open to others, the NBD address taken) lets the LOCK go as it
// returns, nothing of it under way: a start once the cause is gone is
// not refused as "another process holds them".
func TestAPromotedSitesFailedStartLetsItsLockGo(t *testing.T) {
	for name, fail := range map[string]func(t *testing.T, cfg *config.Config) (undo func()){
		"the changed regions damaged": func(t *testing.T, cfg *config.Config) func() {
			path := filepath.Join(PromotedDir(cfg), "vol1.bitmap")
			if err := os.WriteFile(path, []byte("not a bitmap"), 0o644); err != nil {
				t.Fatal(err)
			}
			return func() { os.Remove(path) }
		},
		"the control token open to others": func(t *testing.T, cfg *config.Config) func() {
			path := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(path, []byte("t\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg.ControlTokenFile = path
			return func() { cfg.ControlTokenFile = "" }
		},
		"the NBD address taken": func(t *testing.T, cfg *config.Config) func() {
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Secondary.NBD = taken.Addr().String()
			return func() { taken.Close(); cfg.Secondary.NBD = "127.0.0.1:0" }
		},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := linkConfig(t)
			cfg.Secondary.NBD = "127.0.0.1:0"
			quiet := slog.New(slog.DiscardHandler)
			firstStart(t, cfg)
			if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
				t.Fatal(err)
			}
			undo := fail(t, cfg)
			if p, err := OpenPromoted(cfg, quiet, PromotedOptions{}); err == nil {
				p.close()
				undo()
				t.Fatalf("the promoted site started with %s", name)
			} else {
				t.Logf("the start: %v", err)
			}
			if l, err := disk.OS.Lock(filepath.Join(PromotedDir(cfg), "LOCK")); err != nil {
				t.Errorf("the failed start kept the promotion directory's LOCK: %v", err)
			} else {
				l.Close()
			}
			undo()
			p, err := OpenPromoted(cfg, quiet, PromotedOptions{})
			if err != nil {
				t.Fatalf("the promoted site, %s no more: %v", name, err)
			}
			p.close()
		})
	}
}
