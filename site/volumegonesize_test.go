package site

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"duplex/config"
	"duplex/transport"
)

// TestAVolumeConfiguredAnotherSizeIsNotTakenForGone: a primary volume
// whose configured size changed since pairs.json named it, its image as
// the pair state says, is a configuration to put right, not an image cut
// short: the refusal says the sizes, and nothing of promoting the
// secondary or re-creating the sites. At the secondary, which records no
// size, an image shorter than the configured size says that the size may
// be what changed.
func TestAVolumeConfiguredAnotherSizeIsNotTakenForGone(t *testing.T) {
	cfg := copiedSites(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Primary.Subsystems[0].Volumes[0].Size = config.Size(2 << 20)
	p, err := OpenPrimary(cfg, log, PrimaryOptions{Dialer: linkDialer(t, cfg)})
	if err == nil {
		stopAtOnce(p)
		t.Fatal("the primary started with vol1 configured at 2 MiB over its 1 MiB image")
	}
	if errors.Is(err, errImageGone) {
		t.Errorf("the primary's image of vol1, the size pairs.json says, is taken for gone: %v", err)
	}
	wantWords(t, "the refusal", err.Error(), "1048576", "configured size is 2097152")

	s, err := OpenSecondary(cfg, log, SecondaryOptions{})
	if err == nil {
		s.Close()
		t.Fatal("the secondary started with vol1 configured at 2 MiB over its 1 MiB image")
	}
	wantWords(t, "the secondary's refusal", err.Error(), "1048576", "2097152", "configured size changed")
}

// TestAFirstStartCutShortStartsAgain: a kill during a session's first
// start leaves images that no record names yet: one created and not yet
// sized (empty), or, at the secondary, a state that names the volume as
// never copied. Neither is refused: the start goes on as the first did.
func TestAFirstStartCutShortStartsAgain(t *testing.T) {
	cfg := linkConfig(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, path := range []string{cfg.Primary.Subsystems[0].Volumes[0].Path, cfg.Secondary.Volumes[0].Path} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := OpenSecondary(cfg, log, SecondaryOptions{})
	if err != nil {
		t.Fatalf("the secondary's start over an image a killed first start created and did not size: %v", err)
	}
	s.Close()
	// Killed once its state was written: it names every volume, never
	// copied; an image gone since holds nothing the state counts on.
	if err := os.Remove(cfg.Secondary.Volumes[1].Path); err != nil {
		t.Fatal(err)
	}
	if s, err = OpenSecondary(cfg, log, SecondaryOptions{}); err != nil {
		t.Fatalf("the secondary's start over an image of a volume never copied, gone: %v", err)
	}
	s.Close()
	p, err := OpenPrimary(cfg, log, PrimaryOptions{Dialer: transport.NewMemNetwork(1, transport.Faults{})})
	if err != nil {
		t.Fatalf("the primary's start over an image a killed first start created and did not size: %v", err)
	}
	stopAtOnce(p)
}

// TestASparseImageOfTheVolumesSizeIsAccepted: an image whose size is the
// volume's is there, however little of it is allocated: a sparse image
// all holes (a copy of zeros, a restore that keeps holes) is no image
// gone, at either site.
func TestASparseImageOfTheVolumesSizeIsAccepted(t *testing.T) {
	cfg := copiedSites(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, path := range []string{cfg.Primary.Subsystems[0].Volumes[0].Path, cfg.Secondary.Volumes[0].Path} {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	s, err := OpenSecondary(cfg, log, SecondaryOptions{})
	if err != nil {
		t.Fatalf("the secondary refused a sparse image of the volume's size: %v", err)
	}
	s.Close()
	p, err := OpenPrimary(cfg, log, PrimaryOptions{Dialer: linkDialer(t, cfg)})
	if err != nil {
		t.Fatalf("the primary refused a sparse image of the volume's size: %v", err)
	}
	stopAtOnce(p)
}
