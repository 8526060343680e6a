package site

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/pair"
)

// copiedSites runs a secondary and a primary of a link configuration
// until every pair is duplex at both, then stops both.
func copiedSites(t *testing.T) *config.Config {
	t.Helper()
	cfg := linkConfig(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := OpenSecondary(cfg, log, SecondaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stopS := runUntil(t, func(ctx context.Context) { s.Run(ctx) })
	cfg.Primary.Secondary = s.ListenAddr()
	p, err := OpenPrimary(cfg, log, PrimaryOptions{Dialer: linkDialer(t, cfg)})
	if err != nil {
		t.Fatal(err)
	}
	stopP := runUntil(t, func(ctx context.Context) { p.Run(ctx, 0) })
	waitFor(t, time.Minute, "every pair duplex at both sites", func() bool {
		return allDuplex(p.Status().Volumes) && allDuplex(s.Status().Volumes)
	})
	stopP()
	stopS()
	return cfg
}

func allDuplex(vs []control.VolumeStatus) bool {
	for _, v := range vs {
		if v.State != string(pair.Duplex) {
			return false
		}
	}
	return len(vs) > 0
}

// gone are what may become of a volume's image between two runs.
var gone = []struct {
	name string
	do   func(path string) error
}{
	{"deleted", os.Remove},
	{"emptied", func(path string) error { return os.Truncate(path, 0) }},
	{"cut short", func(path string) error { return os.Truncate(path, 4096) }},
}

// TestAGoneSecondaryVolumeStopsItsStart: a secondary whose state names a
// volume it holds a copy of refuses to start when that volume's image was
// deleted, emptied or cut short since its last run, naming the image and
// what to do; created again as zeros, it would be reported duplex and
// consistent, a copy of nothing.
func TestAGoneSecondaryVolumeStopsItsStart(t *testing.T) {
	cfg := copiedSites(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	path := cfg.Secondary.Volumes[0].Path
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gone {
		t.Run(g.name, func(t *testing.T) {
			if err := g.do(path); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, b, 0o600)
			s, err := OpenSecondary(cfg, log, SecondaryOptions{})
			if err == nil {
				st := s.Status().Volumes
				s.Close()
				t.Fatalf("the secondary started over the %s image %s; its status: %+v", g.name, path, st)
			}
			wantWords(t, "the refusal", err.Error(), path, cfg.Secondary.Volumes[0].Name, "Put the image back", "re-create it")
			if !errors.Is(err, errImageGone) {
				t.Errorf("the refusal does not wrap errImageGone: %v", err)
			}
			if _, serr := os.Stat(path); g.name == "deleted" && !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("the refused start created %s again (%v)", path, serr)
			}
		})
	}
}

// TestAGonePrimaryVolumeStopsItsStart: a primary whose pair state names a
// volume refuses to start when that volume's image was deleted, emptied or
// cut short since its last run, naming the image and what to do; created
// again as zeros, it would be served to the clients as their data.
func TestAGonePrimaryVolumeStopsItsStart(t *testing.T) {
	cfg := copiedSites(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pv := cfg.Primary.Subsystems[0].Volumes[0]
	b, err := os.ReadFile(pv.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gone {
		t.Run(g.name, func(t *testing.T) {
			if err := g.do(pv.Path); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(pv.Path, b, 0o600)
			p, err := OpenPrimary(cfg, log, PrimaryOptions{Dialer: linkDialer(t, cfg)})
			if err == nil {
				st := p.Status().Volumes
				stopAtOnce(p)
				t.Fatalf("the primary started over the %s image %s; its status: %+v", g.name, pv.Path, st)
			}
			wantWords(t, "the refusal", err.Error(), pv.Path, pv.Name, "Put the image back")
		})
	}
}

// TestAGonePromotedVolumeStopsItsStart: a promoted site refuses to start
// when the image of a volume it holds was deleted, emptied or cut short,
// naming the image and what to do; created again as zeros, it would be
// served to the clients as the session's data.
func TestAGonePromotedVolumeStopsItsStart(t *testing.T) {
	cfg := copiedSites(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, _, _, err := Promote(context.Background(), cfg, log, nil); err != nil {
		t.Fatal(err)
	}
	path := cfg.Secondary.Volumes[0].Path
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gone {
		t.Run(g.name, func(t *testing.T) {
			if err := g.do(path); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, b, 0o600)
			p, err := OpenPromoted(cfg, log, PromotedOptions{})
			if err == nil {
				p.close()
				t.Fatalf("the promoted site started over the %s image %s", g.name, path)
			}
			wantWords(t, "the refusal", err.Error(), path, cfg.Secondary.Volumes[0].Name, "Put the image back", "Disaster recovery runbook")
		})
	}
}

// TestAPairAddedCreatesItsImages: a volume added to the config of sites
// that ran before is one neither record names: both sites create its
// image, as at a session's first start (which copiedSites does).
func TestAPairAddedCreatesItsImages(t *testing.T) {
	cfg := copiedSites(t)
	dir := filepath.Dir(cfg.Secondary.Volumes[0].Path)
	cfg.Primary.Subsystems[0].Volumes = append(cfg.Primary.Subsystems[0].Volumes,
		config.Volume{Name: "added", Path: filepath.Join(filepath.Dir(cfg.Primary.Subsystems[0].Volumes[0].Path), "added.img"), Size: config.Size(1 << 20)})
	cfg.Secondary.Volumes = append(cfg.Secondary.Volumes, config.SecondaryVolume{Name: "added", Path: filepath.Join(dir, "added.img")})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := OpenSecondary(cfg, log, SecondaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := OpenPrimary(cfg, log, PrimaryOptions{Dialer: linkDialer(t, cfg)})
	if err != nil {
		t.Fatal(err)
	}
	stopAtOnce(p)
}
