package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"duplex/nbd"
	"duplex/workload"
)

// TestDaemonsReadViewIsStable reads a secondary export over one NBD
// connection, slowly, for seconds, while dependent writes replicate into
// the same volume: the connection is pinned at the group current when it
// opened, so the whole image it reads is one state, and a single-pass
// check of it (which finds violations in a copy that moves while it is
// read) finds none. A second connection opened later sees newer writes.
func TestDaemonsReadViewIsStable(t *testing.T) {
	t.Parallel()
	const (
		volSize      = 16 << 20
		regionBlocks = 512
	)
	s := newSession(t, sessionOpts{name: "e2e-read-view", volSize: volSize})
	s.start()
	names := s.cfg.VolumeNames()
	lay := workload.Layout{Volumes: 1, BlocksPerVolume: regionBlocks, Clients: 4}
	nt := &nbdTarget{perClient: regionBlocks / lay.Clients}
	for range lay.Clients {
		nt.conns = append(nt.conns, []*nbd.Client{dialNBD(t, s.cfg.Primary.NBD, names[0])})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loadDone := make(chan error, 1)
	go func() {
		_, err := workload.Run(ctx, lay, nt, 0, uint64(time.Now().UnixNano()))
		loadDone <- err
	}()
	nt.waitAcked(t)
	time.Sleep(500 * time.Millisecond)
	reads := 0
	for round := range 3 {
		view := dialNBD(t, s.cfg.Secondary.NBD, names[0])
		before := nt.acked.Load()
		// A block at a time, with pauses: several seconds in all, with
		// groups applied between any two reads.
		read := func(_ int, p []byte, off int64) error {
			for len(p) > 0 {
				n := min(len(p), workload.BlockSize)
				if reads++; reads%16 == 0 {
					time.Sleep(100 * time.Millisecond)
				}
				if err := view.ReadAt(p[:n], off); err != nil {
					return err
				}
				p, off = p[n:], off+int64(n)
			}
			return nil
		}
		start := time.Now()
		vs, err := workload.Check(lay, read)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs[:min(len(vs), 10)] {
			t.Errorf("round %d: one connection's image: %s", round, v)
		}
		view.Close()
		t.Logf("round %d: read %d blocks over one connection in %s while %d dependent writes were acknowledged: %d violations",
			round, regionBlocks, time.Since(start).Round(time.Millisecond), nt.acked.Load()-before, len(vs))
		if nt.acked.Load() == before {
			t.Errorf("round %d: no write was acknowledged while the connection read", round)
		}
	}
	cancel()
	if err := <-loadDone; err != nil {
		t.Fatalf("dependent writes: %v", err)
	}
	loadavg, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load average %s", strings.TrimSpace(string(loadavg)))
}
