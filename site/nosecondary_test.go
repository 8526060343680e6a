package site

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/coupling"
)

// firstStart opens cfg's secondary as a daemon's first start does, and
// closes it: the state of a secondary that ran but never received a
// group, which recover and promote take over. Uncoupled and binding only
// a port of its own, so that it publishes nothing and needs no etcd.
func firstStart(t *testing.T, cfg *config.Config) {
	t.Helper()
	c := *cfg
	c.Coupling = config.Coupling{}
	c.ControlTokenFile = ""
	c.Secondary.Control, c.Secondary.NBD, c.Secondary.Listen = "", "", "127.0.0.1:0"
	s, err := OpenSecondary(&c, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// An offline open (recover's) and a promote of paths where no secondary
// ever ran are refused with ErrNoSecondary and make nothing there: made,
// the empty volumes would be reported usable, or served as the recovered
// data.
func TestOfflineOpenOfNoSecondaryMakesNothing(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	dir := filepath.Dir(cfg.Secondary.Journal)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if s, err := OpenSecondary(cfg, quiet, SecondaryOptions{Offline: true}); !errors.Is(err, ErrNoSecondary) {
		if err == nil {
			s.Close()
		}
		t.Errorf("offline open of no secondary: %v, want ErrNoSecondary", err)
	}
	if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); !errors.Is(err, ErrNoSecondary) {
		t.Errorf("promote of no secondary: %v, want ErrNoSecondary", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after the refusals: %v, want it never made", dir, err)
	}
	firstStart(t, cfg)
	s, err := OpenSecondary(cfg, quiet, SecondaryOptions{Offline: true})
	if err != nil {
		t.Fatalf("offline open after a first start: %v", err)
	}
	s.Close()
}

// A coupled member's promote of paths where no secondary ever ran is
// refused before it asks etcd for the group's recovery time: the first
// member to ask fixes it for every member, and a wrong config must not
// fix it.
func TestCoupledPromoteOfNoSecondaryFixesNoRecoveryTime(t *testing.T) {
	ctx := context.Background()
	store := coupling.NewMemStore()
	if err := coupling.Add(ctx, store, "new", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := store.Publish(ctx, "new", coupling.Report{Time: time.Now().UnixNano(), At: time.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	cfg := coupledConfig(t, "new")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, _, _, err := PromoteWith(ctx, cfg, quiet, PromoteOptions{CouplingStore: store}); !errors.Is(err, ErrNoSecondary) {
		t.Errorf("coupled promote of no secondary: %v, want ErrNoSecondary", err)
	}
	if v, err := store.Read(ctx); err != nil || v.Recovery != 0 {
		t.Errorf("the group's recovery time after the refusal: %d (%v), want none fixed", v.Recovery, err)
	}
}

// A secondary that ran, whose file system is not mounted again yet after
// the reboot of a disaster (its mount point empty), is refused as paths
// where none ran are, and the refusal says to check the mount rather than
// that no secondary ever ran there: told that, an operator takes the
// config for wrong, or starts a secondary there, which makes empty volumes.
func TestNoSecondaryRefusalNamesAFileSystemNotMounted(t *testing.T) {
	cfg := linkConfig(t)
	firstStart(t, cfg)
	dir := filepath.Dir(cfg.Secondary.Journal)
	if err := os.Rename(dir, dir+".unmounted"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := OpenSecondary(cfg, quiet, SecondaryOptions{Offline: true})
	if err == nil {
		s.Close()
	}
	if !errors.Is(err, ErrNoSecondary) || !strings.Contains(err.Error(), "not mounted") || strings.Contains(err.Error(), "ever ran") {
		t.Errorf("offline open of a secondary whose file system is not mounted: %v, want ErrNoSecondary naming the mount, "+
			"not saying that no secondary ever ran", err)
	}
}
