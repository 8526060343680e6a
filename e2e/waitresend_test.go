package e2e

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
	"duplex/transport"
	"duplex/workload"
)

// losingDialer dials as its Dialer does; once armed, the first frame a
// connection sends that carries a record set is lost on the way.
type losingDialer struct {
	transport.Dialer
	armed atomic.Bool
	lost  atomic.Bool
}

type losingConn struct {
	transport.Conn
	d *losingDialer
}

func (d *losingDialer) Dial(ctx context.Context) (transport.Conn, error) {
	c, err := d.Dialer.Dial(ctx)
	if err != nil {
		return nil, err
	}
	return losingConn{Conn: c, d: d}, nil
}

func (c losingConn) Send(f []byte) error {
	if _, sets := transport.FirstSetAt(f); sets && c.d.armed.Load() && c.d.lost.CompareAndSwap(false, true) {
		return nil
	}
	return c.Conn.Send(f)
}

// writesThroughASlowFsync has a primary write to volume 1 every 100 ms
// while the secondary's journal fsync of the new primary process's first
// group waits 2 s (four of the primary's 500 ms resend periods), with
// losing armed once the fsync waits if lose; it returns the primary's stats once
// every write is on the secondary, the first checked there as well, and
// the resends counted until the fsync returned (those after it may come
// of a loaded machine's pauses, which the resend timer is there for).
func writesThroughASlowFsync(t *testing.T, losing *losingDialer, lose bool) (st struct{ connects, resends, waitResends uint64 }, writes int) {
	t.Helper()
	const hang = 2 * time.Second
	dir := t.TempDir()
	net := transport.NewMemNetwork(1, transport.Faults{})
	losing.Dialer = net
	fsys := &slowSyncFS{FS: disk.OS, started: make(chan struct{}, 1), gate: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(fsys.gate) }) }
	defer release()
	sec := startSecondary(t, dir, net, secondaryOpts{fs: fsys})
	fsys.armed.Store(true)
	// A frame a cut, and one a write at most, 60 over the wait: the
	// secondary reads them all ahead (64) while it waits. The resend
	// timer is the default's least, 500 ms, four times over the wait.
	p := startPrimary(t, dir, primaryOpts{interval: 50 * time.Millisecond, retransmit: 500 * time.Millisecond, dialer: losing})
	ctx := context.Background()
	block := func(i int) []byte { return bytes.Repeat([]byte{byte(i + 1)}, workload.BlockSize) }
	if err := p.WriteAt(ctx, 0, block(0), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fsys.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the secondary never fsynced its journal")
	}
	losing.armed.Store(lose)
	began := time.Now()
	writes = 1
	for time.Since(began) < hang {
		if err := p.WriteAt(ctx, 1, block(writes), int64(writes%layout.BlocksPerVolume)*workload.BlockSize); err != nil {
			t.Fatal(err)
		}
		writes++
		time.Sleep(100 * time.Millisecond)
	}
	waitResends := p.mover.Stats().Resends
	release()
	fsys.armed.Store(false)
	quiesce(t, p, sec)
	got := make([]byte, workload.BlockSize)
	if err := sec.read(0, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, block(0)) {
		t.Fatal("the secondary does not hold the write journaled through the slow fsync")
	}
	for i := 1; i < writes; i++ {
		if i+layout.BlocksPerVolume < writes {
			continue // overwritten by a later write
		}
		if err := sec.read(1, got, int64(i%layout.BlocksPerVolume)*workload.BlockSize); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, block(i)) {
			t.Fatalf("the secondary does not hold write %d, made while its journal fsync waited", i)
		}
	}
	ms := p.mover.Stats()
	t.Logf("%d writes over a %s fsync: %d connections, %d resends (%d while it waited), last error %q", writes, hang, ms.Connects, ms.Resends, waitResends, ms.LastError)
	return struct{ connects, resends, waitResends uint64 }{ms.Connects, ms.Resends, waitResends}, writes
}

// TestWritesThroughASlowFsyncAreNotSentAgain: the record sets the primary
// sends while the secondary's journal fsync waits are read ahead by the
// secondary, or wait in the link's buffers until it reads on, and its
// receipts meanwhile say it waits on its disk: the primary must not count
// them lost and send them again every resend period for as long as the
// disk waits, each a duplicate dropped.
func TestWritesThroughASlowFsyncAreNotSentAgain(t *testing.T) {
	t.Parallel()
	losing := &losingDialer{}
	st, writes := writesThroughASlowFsync(t, losing, false)
	if losing.lost.Load() {
		t.Fatal("a record set was lost on a link that loses none")
	}
	if st.connects != 1 {
		t.Errorf("the primary connected %d times, want once", st.connects)
	}
	if st.waitResends != 0 {
		t.Errorf("the primary sent record sets again %d times while the fsync waited (%d writes): the secondary, which said it waited on its disk, read them or would once it took more", st.waitResends, writes)
	}
}

// TestARecordSetLostWhileTheDiskWaitsIsSentAgain: the first record set
// sent while the fsync waits is lost on the way. What the secondary holds
// beyond it must not hide the gap: it is sent again, and every write
// reaches the secondary over the one link.
func TestARecordSetLostWhileTheDiskWaitsIsSentAgain(t *testing.T) {
	t.Parallel()
	losing := &losingDialer{}
	st, _ := writesThroughASlowFsync(t, losing, true)
	if !losing.lost.Load() {
		t.Fatal("no record set was sent while the fsync waited")
	}
	if st.resends == 0 {
		t.Error("the record set lost was never sent again, yet every write is on the secondary")
	}
	if st.connects != 1 {
		t.Errorf("the primary connected %d times, want once: the lost record set was not sent again on the link", st.connects)
	}
}
