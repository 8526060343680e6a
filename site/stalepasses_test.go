package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"duplex/transport"
)

// TestAStaleRecordSetsRefusalPasses: a primary that lost its timer state
// restarts on a clock an hour behind the secondary's consistency time and
// takes a write before the link is up. The secondary refuses that record
// set as stale; the primary suspends its pairs by itself, dropping it into
// their bitmaps, its next connection is taken, and the resync makes every
// pair duplex again with no operator acting. The refusal passes, then, and
// the primary must read it so: read as lasting, its status says the
// secondary refuses it until an operator acts, and `duplex pair --wait`
// gives up at once on a pair that is duplex again a second later.
func TestAStaleRecordSetsRefusalPasses(t *testing.T) {
	cfg := linkConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fwd, _, prim, _, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	ctx := context.Background()
	if err := prim.Write(ctx, "vol1", bytes.Repeat([]byte{0xa1}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	quiesceMover(t, prim)
	stopPrim()
	if err := os.Remove(filepath.Join(PairStateDir(cfg), "timer.json")); err != nil {
		t.Fatal(err)
	}

	fwd.SetDown(true)
	opts := linkOptions(fwd)
	opts.Clock = func() int64 { return time.Now().Add(-time.Hour).UnixNano() }
	p, err := OpenPrimary(cfg, quiet, opts)
	if err != nil {
		t.Fatal(err)
	}
	runLinked(t, p)
	if err := p.Write(ctx, "vol1", bytes.Repeat([]byte{0xb2}, 4096), 4096); err != nil {
		t.Fatal(err)
	}
	fwd.SetDown(false)
	waitFor(t, time.Minute, "the secondary's refusal of the stale record set", func() bool {
		return p.Mover().Stats().LastRefusalKind == transport.RefusalStale
	})
	if ms := p.Mover().Stats(); !ms.LastRefusalPasses {
		t.Errorf("the stale record set's refusal reads as lasting until an operator acts: %q", ms.LastRefusal)
	}
	waitFor(t, time.Minute, "every pair duplex again, no operator acting", func() bool { return allPairsDuplex(p.Status()) })
}
