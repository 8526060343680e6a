package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"duplex/control"
	"duplex/transport"
)

// TestARejoinedSitesStartOnAHungDiskEndsWithItsContext: the old primary,
// rejoined (duplex rejoin --yes), starts as the promoted site's
// secondary while the disk of its journal does not answer, and is asked
// to stop (SIGTERM): the start is given up within the secondary's grace,
// saying it stopped while starting and naming the journal, having served
// nothing. Once the disk answers, the start it left behind is closed and
// lets the site go: a next start of the same rejoin runs, takes the copy,
// and holds the promoted site's bytes, its own write discarded.
func TestARejoinedSitesStartOnAHungDiskEndsWithItsContext(t *testing.T) {
	const mib = 1 << 20
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fwd, _, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	ctx := context.Background()
	fill := func(b byte) []byte { return bytes.Repeat([]byte{b}, 4096) }
	if err := prim.Write(ctx, "vol1", fill(1), 0); err != nil {
		t.Fatal(err)
	}
	quiesceMover(t, prim)
	fwd.SetDown(true) // never at the secondary: the rejoin discards it
	if err := prim.Write(ctx, "vol1", fill(2), 5*mib); err != nil {
		t.Fatal(err)
	}
	stopPrim()
	stopSec()
	if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	rev := transport.NewMemNetwork(2, transport.Faults{})
	b, _ := openReversed(t, cfg, quiet, rev)
	if err := b.Write(ctx, "vol3", fill(3), 2*mib); err != nil {
		t.Fatal(err)
	}
	_, r := beginRejoin(t, cfg, b)

	h := newStateDiskHang()
	t.Cleanup(h.release)
	h.hang(cfg.Primary.Journal)
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	opened := make(chan error, 1)
	go func() {
		s, err := OpenRejoined(cfg, quiet, r, SecondaryOptions{Context: sctx, FS: h.fs, Listener: keptListener{rev}})
		if s != nil {
			t.Error("a rejoined site's start given up returned its site")
			s.close()
		}
		opened <- err
	}()
	waitFor(t, 10*time.Second, "the rejoined site's start to wait on its disk", func() bool { return hungOps(h) > 0 })
	stop()
	bound := 2*time.Second + SecondaryStartStopGrace
	select {
	case err := <-opened:
		t.Logf("the rejoined site's start asked to stop: %v", err)
		if err == nil || !strings.Contains(err.Error(), "stopped while starting") || !strings.Contains(err.Error(), "the journal "+cfg.Primary.Journal) {
			t.Errorf("the rejoined site's start asked to stop: %v, want it stopped while starting, naming the journal %s", err, cfg.Primary.Journal)
		}
	case <-time.After(bound):
		t.Fatalf("the rejoined site's start on a hung disk has not returned %s after asked to stop", bound)
	}

	h.release()
	var a *Secondary
	waitFor(t, 10*time.Second, "a next start of the rejoined site, once the disk answered", func() bool {
		var err error
		a, err = OpenRejoined(cfg, quiet, r, SecondaryOptions{Listener: keptListener{rev}})
		return err == nil
	})
	runFor(t, a.Run)
	if _, err := b.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "every pair of the reverse direction duplex", func() bool { return allPairsDuplex(b.Status()) })
	quiesceMover(t, b)
	sameImages(t, cfg, "after the rejoin's copy", b, a)
	got := make([]byte, 1)
	if err := a.ReadAt("vol1", got, 5*mib); err != nil || got[0] != 0 {
		t.Errorf("the old primary's discarded write after the copy: %d, %v; want the promoted site's zeroes", got[0], err)
	}
}
