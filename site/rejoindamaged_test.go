package site

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/control"
	"duplex/disk"
	"duplex/failover"
	"duplex/transport"
)

// A promoted site that ran as the primary of the reverse direction, whose
// data generation there is damaged, cannot tell whether the old primary
// took the session back: TookBack refuses, naming the file and what to do.
// Taken as "no", the rejoin went on as the old primary's, whatever the old
// primary followed.
func TestTookBackOfADamagedGeneration(t *testing.T) {
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			cfg := linkConfig(t)
			dir := ReverseDir(cfg)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			gen, err := openGeneration(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, ch := range []control.Changes{{Follows: gen.String()}, {}} {
				if took, err := TookBack(cfg, ch); err != nil || took != (ch.Follows != "") {
					t.Fatalf("TookBack of %+v with the generation whole: %v, %v", ch, took, err)
				}
			}
			path := filepath.Join(dir, "generation.json")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, d.spoil(b), 0o644); err != nil {
				t.Fatal(err)
			}
			// With the old primary's changes, and without them (it did
			// not answer): either way the damage is said.
			for _, ch := range []control.Changes{{Follows: gen.String()}, {Follows: (gen + 1).String()}, {}} {
				took, err := TookBack(cfg, ch)
				if took || !errors.Is(err, disk.ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "put back a copy") {
					t.Errorf("TookBack of %+v with %s %s: %v, %v; want it refused as damaged, naming the file and what to do", ch, path, d.name, took, err)
				}
			}
		})
	}
}

// A rejoined old primary whose record of the promotion the other site's
// switchover handed back is damaged is refused by PromotedBack, naming the
// file: taken as "no", duplex rejoin ran it as the rejoined secondary.
func TestPromotedBackOfADamagedPromotion(t *testing.T) {
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			cfg := linkConfig(t)
			cfg.Primary.Listen, cfg.Primary.Journal = "127.0.0.1:0", filepath.Join(cfg.Dir, "primary", "journal")
			rev, err := cfg.Reversed()
			if err != nil {
				t.Fatal(err)
			}
			if back, err := PromotedBack(cfg); back || err != nil {
				t.Fatalf("PromotedBack with no promotion: %v, %v", back, err)
			}
			dir := PromotedDir(rev)
			if err := failover.WritePromotion(nil, dir, failover.Promotion{Session: cfg.Session, At: 5, Generation: transport.NewGeneration()}); err != nil {
				t.Fatal(err)
			}
			if back, err := PromotedBack(cfg); !back || err != nil {
				t.Fatalf("PromotedBack with the promotion whole: %v, %v", back, err)
			}
			path := filepath.Join(dir, "promotion.json")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, d.spoil(b), 0o644); err != nil {
				t.Fatal(err)
			}
			back, err := PromotedBack(cfg)
			if back || !errors.Is(err, disk.ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "put back a copy") {
				t.Errorf("PromotedBack with %s %s: %v, %v; want it refused as damaged, naming the file and what to do", path, d.name, back, err)
			}
		})
	}
}
