package mover

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
	"duplex/timer"
	"duplex/transport"
)

// TestQuiesceHonoursItsContextWhileItsCutWaitsForTheTimersLease: the
// disk of the timer's lease stops answering, and the stamps reach the
// lease on disk. The cut a Quiesce makes stamps its horizon, under the
// subsystem's lock, and waits for the lease's renewal: the Quiesce must
// still end with its context (a primary's stop drains within its
// timeout). Once the disk answers, the cut ships what it took.
func TestQuiesceHonoursItsContextWhileItsCutWaitsForTheTimersLease(t *testing.T) {
	dir := t.TempDir()
	fsys := disk.NewInjector(nil)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	const lease = time.Second
	tm, err := timer.OpenPersistent(fsys, filepath.Join(dir, "timer.json"), clock.Load, lease, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := startPrimary(t, options{subsystems: []string{"ss1"}, timer: tm})
	hung := make(chan struct{})
	release := sync.OnceFunc(func() { close(hung) })
	t.Cleanup(release) // before the mover's end, which waits for the cut
	l, _ := p.accept(t)
	l.welcome(transport.Position{Through: map[string]uint64{"ss1": 0}})
	p.write(t, "ss1", bytes.Repeat([]byte{0x11}, 4096), 0)
	for _, op := range []disk.Op{disk.OpWrite, disk.OpSync, disk.OpSyncDir, disk.OpCreate, disk.OpRename} {
		fsys.Inject(disk.Fault{Op: op, Under: dir, Hang: hung})
	}
	clock.Add(int64(2 * lease)) // the next stamp is past the lease on disk

	quiesceEndsWithItsContext(t, p, "its cut waits for the timer's lease")
	if d, _ := tm.LeaseWait(); d == 0 {
		t.Fatal("the timer's lease is not being written: the test hung nothing")
	}

	release()
	quiesced := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		quiesced <- p.mover.Quiesce(ctx)
	}()
	rs := l.recordSet()
	if len(rs.Updates) != 1 || !bytes.Equal(rs.Updates[0].Data, bytes.Repeat([]byte{0x11}, 4096)) {
		t.Fatalf("record set %d holds %d updates, want the write", rs.Seq, len(rs.Updates))
	}
	l.ack(transport.Position{Through: map[string]uint64{"ss1": rs.Seq}})
	if err := <-quiesced; err != nil {
		t.Fatalf("Quiesce once the lease's disk answers and everything is acknowledged: %v", err)
	}
}
