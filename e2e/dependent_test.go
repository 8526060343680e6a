package e2e

import (
	"testing"
	"time"

	"duplex/transport"
)

// TestDependentWritesUnderLinkFaults drives 4 concurrent clients over 2
// subsystems × 2 volumes through an in-memory link that drops, duplicates,
// reorders, delays and corrupts frames and disconnects, and checks the
// dependent-write invariant on the secondary after every applied group.
func TestDependentWritesUnderLinkFaults(t *testing.T) {
	t.Parallel()
	groups := 1000
	if testing.Short() {
		groups = 200
	}
	faults := transport.Faults{Drop: 0.02, Duplicate: 0.02, Reorder: 0.05, Corrupt: 0.02, Disconnect: 0.003, MaxDelay: time.Millisecond}
	net := transport.NewMemNetwork(1, faults)
	r := startDependentRun(t, net, secondaryOpts{}, primaryOpts{interval: 2 * time.Millisecond, retransmit: 40 * time.Millisecond, sidefile: 2 << 20}, 42)
	r.waitGroups(t, groups)
	strikeEveryFault(t, net, faults, r.moreGroups(t))
	// Heal the link: everything acknowledged must arrive.
	n := r.finish(t)
	p, sec, acked := r.p, r.sec, r.acked
	st, fs := sec.sec.Stats(), net.Stats()
	t.Logf("%d groups checked, 0 violations; %d writes acknowledged; link: %d frames, %d dropped, %d duplicated, %d reordered, %d corrupted, %d disconnects; secondary saw %d duplicates, %d early, %d corrupt; mover resends %d",
		n, acked, fs.Frames, fs.Dropped, fs.Duplicated, fs.Reordered, fs.Corrupted, fs.Disconnects, st.Duplicates, st.Early, st.CorruptFrames, p.mover.Stats().Resends)
	if fs.Dropped == 0 || fs.Duplicated == 0 || fs.Reordered == 0 || fs.Corrupted == 0 || fs.Disconnects == 0 {
		t.Fatalf("not every fault was injected: %+v", fs)
	}
}
