package site

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
)

// TestAGoneImagesRefusalSaysWhatOpeningWouldDo: the refusal of a gone
// image says what opening it would do to that image: a missing one would
// be created again, an empty one resized to the volume, both as zeros;
// one cut short is neither (a start refuses its size).
func TestAGoneImagesRefusalSaysWhatOpeningWouldDo(t *testing.T) {
	cfg := copiedSites(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	want := map[string]string{"deleted": "created again as zeros", "emptied": "resized to the volume as zeros", "cut short": ""}
	for _, site := range []struct {
		name string
		path string
		open func() error
	}{
		{"secondary", cfg.Secondary.Volumes[0].Path, func() error {
			s, err := OpenSecondary(cfg, log, SecondaryOptions{})
			if err == nil {
				s.Close()
			}
			return err
		}},
		{"primary", cfg.Primary.Subsystems[0].Volumes[0].Path, func() error {
			p, err := OpenPrimary(cfg, log, PrimaryOptions{Dialer: linkDialer(t, cfg)})
			if err == nil {
				stopAtOnce(p)
			}
			return err
		}},
	} {
		b, err := os.ReadFile(site.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gone {
			t.Run(site.name+" "+g.name, func(t *testing.T) {
				if err := g.do(site.path); err != nil {
					t.Fatal(err)
				}
				defer os.WriteFile(site.path, b, 0o600)
				err := site.open()
				if err == nil {
					t.Fatalf("started over the %s image", g.name)
				}
				for kind, words := range want {
					has := words != "" && strings.Contains(err.Error(), words)
					if kind == g.name && words != "" && !has {
						t.Errorf("the refusal of a %s image does not say it would be %s: %v", g.name, words, err)
					}
					if kind != g.name && has {
						t.Errorf("the refusal of a %s image says it would be %s: %v", g.name, words, err)
					}
				}
			})
		}
	}
}
