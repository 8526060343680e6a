package e2e

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/transport"
	"duplex/workload"
)

// TestASlowApplierKeepsTheLink: the secondary's applier takes 7 s over
// one group, longer than the primary's silence time (5 s), as it does
// over a volume write or fsync on a slow disk, while the primary goes on
// writing. The receiver journals and acknowledges the groups after it,
// and then waits for the applier to take one (the queue to it is full):
// the secondary is reachable and busy, not cut off, so the link must stay
// up, the secondary's status must answer meanwhile, and every write must
// reach the secondary once the applier goes on. Before: the receiver said
// nothing while it waited for the applier, so the primary gave the link
// up 5 s into the wait ("nothing from the secondary for 5s") and
// redialled.
func TestASlowApplierKeepsTheLink(t *testing.T) {
	t.Parallel()
	const hang = 7 * time.Second
	dir := t.TempDir()
	net := transport.NewMemNetwork(1, transport.Faults{})
	var (
		armed   atomic.Bool
		started = make(chan struct{}, 1)
		gate    = make(chan struct{})
		once    sync.Once
	)
	release := func() { once.Do(func() { close(gate) }) }
	defer release()
	// The applier calls OnApplied after it wrote each group: held there,
	// it is the applier held by the disk under the group's writes.
	sec := startSecondary(t, dir, net, secondaryOpts{onApplied: func(_ *secondarySite, g *consistency.Group) {
		if !armed.Load() || len(g.Updates) == 0 {
			return
		}
		select {
		case started <- struct{}{}:
		default:
		}
		<-gate
	}})
	p := startPrimary(t, dir, primaryOpts{interval: 10 * time.Millisecond, dialer: net})
	ctx := context.Background()
	block := func(i int) []byte { return bytes.Repeat([]byte{byte(i + 1)}, workload.BlockSize) }
	if err := p.WriteAt(ctx, 0, block(0), 0); err != nil {
		t.Fatal(err)
	}
	quiesce(t, p, sec)
	armed.Store(true)
	if err := p.WriteAt(ctx, 0, block(1), workload.BlockSize); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the secondary never applied the write")
	}
	// Writes go on while the applier is held: their groups fill the
	// queue to it, and the receiver waits for the applier to take one.
	began := time.Now()
	writes := 2
	for time.Since(began) < hang {
		if err := p.WriteAt(ctx, 1, block(writes), int64(writes%layout.BlocksPerVolume)*workload.BlockSize); err != nil {
			t.Fatal(err)
		}
		writes++
		stats := make(chan struct{}, 1)
		go func() { sec.sec.Stats(); stats <- struct{}{} }()
		select {
		case <-stats:
		case <-time.After(10 * time.Second):
			t.Fatal("the secondary's status waits on the applier")
		}
		time.Sleep(50 * time.Millisecond)
	}
	release()
	quiesce(t, p, sec)
	for i := 2; i < writes; i++ {
		if i+layout.BlocksPerVolume < writes {
			continue // overwritten by a later write
		}
		got := make([]byte, workload.BlockSize)
		if err := sec.read(1, got, int64(i%layout.BlocksPerVolume)*workload.BlockSize); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, block(i)) {
			t.Fatalf("the secondary does not hold write %d, acknowledged while the applier was held", i)
		}
	}
	st := p.mover.Stats()
	t.Logf("after the applier was held %s: %d writes, %d connections, last error %q, %d resends", hang, writes, st.Connects, st.LastError, st.Resends)
	if st.Connects != 1 {
		t.Errorf("the primary connected %d times while the applier was held %s, want once: it gave up a secondary that was busy, not cut off (last error %q)",
			st.Connects, hang, st.LastError)
	}
}
