package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/pair"
	"duplex/site"
)

// TestStaleStampsSuspendThenResync: a primary that lost its timer state
// (timer.json deleted) restarts on a clock an hour behind the secondary's
// consistency time and takes a write before the link is up. The secondary
// refuses that record set as stale, and would refuse every resend: the
// session suspends its pairs by itself, saying why in its log, and once the
// link takes record sets again resyncs them; the secondary ends identical.
func TestStaleStampsSuspendThenResync(t *testing.T) {
	t.Parallel()
	cfg := newOpsConfig(t, 4<<20, 16<<20, time.Minute)
	s := startOps(t, cfg)
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, 60*time.Second)
	}
	ctx := context.Background()
	if err := s.prim.Write(ctx, "vol1", bytes.Repeat([]byte{0xa1}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	s.stopPrimary()
	if err := os.Remove(filepath.Join(site.PairStateDir(cfg), "timer.json")); err != nil {
		t.Fatal(err)
	}

	s.net.SetDown(true)
	behind := func() int64 { return time.Now().Add(-time.Hour).UnixNano() }
	var plog logBuffer
	p, err := site.OpenPrimary(cfg, plog.logger(), site.PrimaryOptions{Dialer: s.net, Clock: behind})
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(context.Background())
	s.prim, s.primRun, s.primErr = p, cancel, make(chan error, 1)
	go func() { s.primErr <- p.Run(pctx, time.Minute) }()
	if err := p.Write(ctx, "vol1", bytes.Repeat([]byte{0xb2}, 4096), 4096); err != nil {
		t.Fatal(err)
	}
	s.net.SetDown(false)

	const said = "refused a record set stamped at or before its consistency time (the primary's clock went back): session suspended"
	waitFor(t, 30*time.Second, "the primary to suspend its pairs on the stale refusal (log: "+said+")", func() bool {
		return strings.Contains(plog.String(), said)
	})
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, 60*time.Second)
	}
	qctx, qcancel := context.WithTimeout(ctx, 30*time.Second)
	defer qcancel()
	if err := p.Mover().Quiesce(qctx); err != nil {
		t.Fatalf("the resync did not ship within 30s: %v (mover %+v)", err, p.Mover().Stats())
	}
	s.assertImagesEqual()
}
