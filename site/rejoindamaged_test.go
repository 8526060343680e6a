package site

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
			gen, err := openGeneration(dir, nil, nil)
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

// TestADamagedReverseGenerationSaysWhatItHeld: the data generation of a
// promoted site's reverse pair state is the one its promotion started,
// which the promotion record names: damaged, the refusal of duplex rejoin
// (TookBack) and of the promoted site's start say which it is and how to
// write it back, and written so, both go on. The way without a copy that
// fits any pair state (remove it, and the secondary's journal, identity
// and volume images, for full copies) fits none here: that secondary is
// the old primary, the session's primary again if it took the session
// back, and the promoted site's own start makes the pair state again only
// from the promotion, its regions written since lost.
func TestADamagedReverseGenerationSaysWhatItHeld(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			cfg := rejoinConfig(t)
			firstStart(t, cfg)
			pr, _, _, err := Promote(context.Background(), cfg, quiet, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, err := OpenReversePrimary(cfg, quiet, PrimaryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			stopAtOnce(b)
			path := filepath.Join(ReverseDir(cfg), "generation.json")
			good, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, d.spoil(good), 0o644); err != nil {
				t.Fatal(err)
			}
			write := fmt.Sprintf(`{"generation":"%s"}`, pr.Generation)
			wantFix := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, disk.ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), write) ||
					strings.Contains(err.Error(), "volume images") {
					t.Errorf("%s with %s %s: %v; want it refused as damaged, naming the file and saying to write %s in it, "+
						"not to remove volume images", what, path, d.name, err, write)
				}
			}
			_, err = TookBack(cfg, control.Changes{Follows: pr.Generation.String()})
			wantFix("duplex rejoin (TookBack)", err)
			if b, err := OpenReversePrimary(cfg, quiet, PrimaryOptions{}); err == nil {
				stopAtOnce(b)
				t.Errorf("the promoted site started with %s %s", path, d.name)
			} else {
				wantFix("the promoted site's start", err)
			}
			if err := os.WriteFile(path, []byte(write), 0o644); err != nil {
				t.Fatal(err)
			}
			if took, err := TookBack(cfg, control.Changes{Follows: pr.Generation.String()}); !took || err != nil {
				t.Errorf("TookBack with %s written as the refusal said: %v, %v; want taken back", path, took, err)
			}
			b, err = OpenReversePrimary(cfg, quiet, PrimaryOptions{})
			if err != nil {
				t.Fatalf("the promoted site with %s written as the refusal said: %v", path, err)
			}
			defer stopAtOnce(b)
			if got := b.Status().Generation; got != pr.Generation.String() {
				t.Errorf("the promoted site serves data generation %s, want its promotion's %s", got, pr.Generation)
			}
		})
	}
}
