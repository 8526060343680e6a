package site

import (
	"io"
	"log/slog"
	"testing"

	"duplex/config"
	"duplex/disk"
)

// fullFS is the real disk with a file system that has little room left.
type fullFS struct {
	disk.FS
	free int64
}

func (f fullFS) Available(string) (int64, error) { return f.free, nil }

// TestRecoverOfASecondaryWhoseDiskFilledUp: the secondary's file system
// filled up (by the journal's own growth, or by anything else), so the
// secondary stopped; then the primary site is lost. duplex recover opens
// the secondary offline: it replays what is journaled, checkpoints and
// fences, journaling nothing new. It must not refuse for want of room for
// groups of the size a primary could send (two segments and two of the
// largest groups, here hundreds of MiB): no primary will send any, and the
// operator who cannot free that much space on the spot has no other way to
// the replicated data.
func TestRecoverOfASecondaryWhoseDiskFilledUp(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Demo(dir)
	cfg.ControlTokenFile = ""
	cfg.Primary.NBD, cfg.Primary.Control = "", ""
	cfg.Secondary.NBD, cfg.Secondary.Control = "", ""
	for i := range cfg.Primary.Subsystems {
		for j := range cfg.Primary.Subsystems[i].Volumes {
			cfg.Primary.Subsystems[i].Volumes[j].Size = config.Size(1 << 20)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The secondary ran once with room to spare.
	firstStart(t, cfg)
	s, err := OpenSecondary(cfg, log, SecondaryOptions{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Now its file system has 16 MiB free: plenty for a state file and an
	// identity, not for two of the largest groups the session can form.
	s, err = OpenSecondary(cfg, log, SecondaryOptions{Offline: true, FS: fullFS{FS: disk.OS, free: 16 << 20}})
	if err != nil {
		t.Fatalf("recover's offline open of a secondary whose file system has 16 MiB free (largest group of the session %d MiB): %v",
			LargestGroup(cfg)>>20, err)
	}
	defer s.Close()
	if _, err := s.Replica().Fence(); err != nil {
		t.Fatalf("fence: %v", err)
	}
}
