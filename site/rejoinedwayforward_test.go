package site

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"duplex/control"
	"duplex/transport"
)

// TestARejoinedSiteNamesThePromotedSitesPairState: the way forward an old
// primary rejoined as the promoted site's secondary prints names the pair
// state directory the promoted site keeps as the primary (ReverseDir,
// promoted/primary), not SESSION.primary, the old primary's own: removed
// as told, that one changes nothing at the promoted site, and the
// directory that decides its copies is left.
func TestARejoinedSiteNamesThePromotedSitesPairState(t *testing.T) {
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	_, _, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	stopPrim()
	stopSec()
	if _, _, _, err := Promote(ctx, cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	rev := transport.NewMemNetwork(2, transport.Faults{})
	b, stopB := openReversed(t, cfg, quiet, rev)
	_, r := beginRejoin(t, cfg, b)
	a, err := OpenRejoined(cfg, quiet, r, SecondaryOptions{Listener: rev})
	if err != nil {
		t.Fatal(err)
	}
	stopA := runFor(t, a.Run)
	if _, err := b.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "every pair of B duplex", func() bool { return allPairsDuplex(b.Status()) })
	quiesceMover(t, b)
	rev.SetDown(true)
	stopB()
	stopA()

	r, err = ReadRejoin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := cfg.Primary.Subsystems[0].Volumes[0].Path
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	a2, err := OpenRejoined(cfg, quiet, r, SecondaryOptions{Listener: transport.NewMemNetwork(3, transport.Faults{})})
	if err == nil {
		a2.Close()
		t.Fatal("the rejoined site started over its copy's image gone")
	}
	if !strings.Contains(err.Error(), ReverseDir(cfg)) || strings.Contains(err.Error(), "SESSION.primary") {
		t.Errorf("the rejoined site's way forward does not name the promoted site's pair state %s: %v", ReverseDir(cfg), err)
	}
}
