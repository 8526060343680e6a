package site

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/transport"
)

// rejoinVolumeSize is the size of the volumes of rejoinConfig.
const rejoinVolumeSize = 8 << 20

// rejoinConfig is linkConfig for a round trip: 8 MiB volumes, the old
// primary's listen address and journal (it rejoins as the secondary of the
// promoted site), and the NBD address the promoted site serves on.
func rejoinConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := linkConfig(t)
	for i := range cfg.Primary.Subsystems {
		for j := range cfg.Primary.Subsystems[i].Volumes {
			cfg.Primary.Subsystems[i].Volumes[j].Size = config.Size(rejoinVolumeSize)
		}
	}
	cfg.Primary.Listen, cfg.Primary.Journal = "127.0.0.1:0", filepath.Join(cfg.Dir, "primary", "journal")
	cfg.Secondary.NBD = "127.0.0.1:0"
	return cfg
}

// linkOptions are the options of a primary on the in-memory link n.
func linkOptions(n transport.Dialer) PrimaryOptions {
	return PrimaryOptions{Dialer: n, Retransmit: 40 * time.Millisecond, HandshakeTimeout: 500 * time.Millisecond}
}

// runLinked runs p as linkSites runs its primary, until the test ends or
// the returned stop is called.
func runLinked(t *testing.T, p *Primary) func() {
	return runFor(t, func(ctx context.Context) error { return p.Run(ctx, 200*time.Millisecond) })
}

// openReversed opens the promoted site of cfg as the primary of the
// reverse direction on the in-memory link rev, and runs it.
func openReversed(t *testing.T, cfg *config.Config, log *slog.Logger, rev transport.Dialer) (*Primary, func()) {
	t.Helper()
	b, err := OpenReversePrimary(cfg, log, linkOptions(rev))
	if err != nil {
		t.Fatal(err)
	}
	return b, runLinked(t, b)
}

// allPairsDuplex says every pair of st, linkConfig's four, is duplex.
func allPairsDuplex(st control.Status) bool {
	for _, v := range st.Volumes {
		if v.State != "duplex" {
			return false
		}
	}
	return len(st.Volumes) == 4
}

// quiesceMover waits until p's secondary journaled everything p holds.
func quiesceMover(t *testing.T, p *Primary) {
	t.Helper()
	qctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Mover().Quiesce(qctx); err != nil {
		t.Fatal(err)
	}
}

// rejoinAt takes the old primary of cfg back as the secondary of b, the
// promoted site serving the reverse direction on rev, as duplex rejoin
// does up to its request to b: beginRejoin, then rejoined.
func rejoinAt(t *testing.T, cfg *config.Config, log *slog.Logger, b *Primary, rev transport.Listener, opts SecondaryOptions) ([]RejoinVolume, Rejoined, *Secondary) {
	t.Helper()
	plan, r := beginRejoin(t, cfg, b)
	return plan, r, rejoined(t, cfg, log, r, rev, opts)
}

// beginRejoin plans the copy from b's changed regions and begins the
// rejoin at the old primary of cfg.
func beginRejoin(t *testing.T, cfg *config.Config, b *Primary) ([]RejoinVolume, Rejoined) {
	t.Helper()
	ch, err := b.changedRegions()()
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanRejoin(cfg, ch)
	if err != nil {
		t.Fatalf("the rejoin's plan: %v", err)
	}
	for _, v := range plan {
		t.Logf("rejoin: %s copies %d bytes (%d here, %d there) %s", v.Name, v.Copy, v.Here, v.There, v.Whole)
	}
	r, err := BeginRejoin(cfg, ch, plan)
	if err != nil {
		t.Fatalf("the rejoin: %v", err)
	}
	return plan, r
}

// rejoined opens and runs the old primary of cfg, rejoined by r, as the
// secondary of the promoted site on rev, with opts.
func rejoined(t *testing.T, cfg *config.Config, log *slog.Logger, r Rejoined, rev transport.Listener, opts SecondaryOptions) *Secondary {
	t.Helper()
	opts.Listener = rev
	a, err := OpenRejoined(cfg, log, r, opts)
	if err != nil {
		t.Fatalf("the old primary as the secondary of the promoted site: %v", err)
	}
	runFor(t, a.Run)
	return a
}

// sameImages waits until s applied the last group p's secondary
// acknowledged, then fails the test where a MiB of a volume of cfg differs
// between them.
func sameImages(t *testing.T, cfg *config.Config, when string, p *Primary, s *Secondary) {
	t.Helper()
	waitFor(t, time.Minute, "the secondary to apply the primary's last group "+when, func() bool {
		return s.Replica().Stats().Group >= p.Mover().Stats().Acked.Group
	})
	got, want := make([]byte, 1<<20), make([]byte, 1<<20)
	for _, name := range cfg.VolumeNames() {
		for off := int64(0); off < rejoinVolumeSize; off += 1 << 20 {
			if err := p.ReadAt(name, want, off); err != nil {
				t.Fatal(err)
			}
			if err := s.ReadAt(name, got, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: %s at %d differs between the sites (first byte %d here, %d at the primary)", when, name, off, got[0], want[0])
			}
		}
	}
}
