package e2e

import (
	"context"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/transport"
	"duplex/workload"
)

// TestDependentWritesUnderLinkFaults drives 4 concurrent clients over 2
// subsystems × 2 volumes through an in-memory link that drops, duplicates,
// reorders, delays and corrupts frames and disconnects, and checks the
// dependent-write invariant on the secondary after every applied group.
func TestDependentWritesUnderLinkFaults(t *testing.T) {
	groups := 1000
	if testing.Short() {
		groups = 200
	}
	dir := t.TempDir()
	faults := transport.Faults{Drop: 0.02, Duplicate: 0.02, Reorder: 0.05, Corrupt: 0.02, Disconnect: 0.003, MaxDelay: time.Millisecond}
	net := transport.NewMemNetwork(1, faults)
	var bad violations
	sec := startSecondary(t, dir, net, secondaryOpts{onApplied: func(s *secondarySite, g *consistency.Group) {
		vs, err := workload.Check(layout, s.readDirect)
		bad.add(g.Number, vs, err)
	}})
	p := startPrimary(t, dir, primaryOpts{interval: 2 * time.Millisecond, retransmit: 40 * time.Millisecond, sidefile: 2 << 20, dialer: net})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var acked int64
	go func() {
		var err error
		acked, err = workload.Run(ctx, layout, p, 0, 42)
		done <- err
	}()
	waitGroups(t, &bad, groups, 30*time.Second, func() string { return replicationState(p.mover, sec.sec) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("workload: %v", err)
	}

	// Heal the link: everything acknowledged must arrive.
	net.SetFaults(transport.Faults{})
	quiesce(t, p, sec)
	n, list := bad.snapshot()
	if len(list) > 0 {
		t.Fatalf("violations:\n%v", list)
	}
	assertConverged(t, layout.Volumes, layout.BlocksPerVolume, p.read, sec.read)
	st, fs := sec.sec.Stats(), net.Stats()
	t.Logf("%d groups checked, 0 violations; %d writes acknowledged; link: %d frames, %d dropped, %d duplicated, %d reordered, %d corrupted, %d disconnects; secondary saw %d duplicates, %d early, %d corrupt; mover resends %d",
		n, acked, fs.Frames, fs.Dropped, fs.Duplicated, fs.Reordered, fs.Corrupted, fs.Disconnects, st.Duplicates, st.Early, st.CorruptFrames, p.mover.Stats().Resends)
	if fs.Dropped == 0 || fs.Duplicated == 0 || fs.Reordered == 0 || fs.Corrupted == 0 || fs.Disconnects == 0 {
		t.Fatalf("not every fault was injected: %+v", fs)
	}
}
