package pair

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/disk"
	"duplex/recordset"
	"duplex/subsystem"
)

// TestAFailedWritesRegionStaysStuckWhileItsSuspensionWaits: a's resync
// has its end stamped, and a's volume fails a write while the timer's
// lease hangs: a's suspension waits for the lease, the failed write's
// region stuck in the activity log meanwhile, its only record for a
// crash before the suspension is made (the secondary holds that write's
// data where the volume may not, and a stays duplex on disk). The
// secondary acknowledges the copy's end and a is duplex: the save that
// records it must not unstick that region; once the disk answers, a is
// suspended with the region in its bitmap.
func TestAFailedWritesRegionStaysStuckWhileItsSuspensionWaits(t *testing.T) {
	r := newLeaseRigLogged(t, 64<<20, true)
	r.stop()
	<-r.runDone
	inEffect(t, r.mg, "the suspension of a", r.mg.Suspend("a"), "a", isSuspended)
	r.write("a", 0)
	inEffect(t, r.mg, "the resume of a", r.mg.Resume("a"), "a", isResumed)
	r.mg.copyOne(context.Background())
	a := r.pairOf("a")
	if a.State != Pending || a.CopyEnd == 0 {
		t.Fatalf("a after its copy: %s, end %d; want pending, its end stamped", a.State, a.CopyEnd)
	}
	r.hang()
	const failedAt = 3 * leaseRigLogRegion
	r.ss.AddFailedWrite(subsystem.FailedWrite{Volume: "a", Offset: failedAt, Length: 4096, Err: syscall.EIO})
	r.mg.suspendWriteFailed()
	if got := r.pairOf("a").State; got != Pending {
		t.Fatalf("a while its suspension waits for the lease: %s, want pending", got)
	}
	r.mv.acked.Store(a.CopyEnd)
	r.mv.ackedAt.Store(time.Now().UnixNano())
	r.mg.promote()
	if got := r.pairOf("a").State; got != Duplex {
		t.Fatalf("a once its copy's end is acknowledged: %s, want duplex", got)
	}
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}
	// The log's next write, for another region, carries what it holds.
	if err := r.al.Stick("b", 10*leaseRigLogRegion, 4096); err != nil {
		t.Fatal(err)
	}
	marks, err := actlog.ReadMarks(nil, r.alPath)
	if err != nil {
		t.Fatal(err)
	}
	if !regionsCover(marks["a"], failedAt) {
		t.Errorf("a's failed write at %d, its suspension waiting for the lease, is not in the activity log on disk (a's marks %v): "+
			"a crash now leaves the secondary holding that write's data where the volume may not, a duplex", failedAt, marks["a"])
	}
	r.answered()
	r.waitPair("a", "suspended", func(p Pair) bool { return p.State == Suspended })
	if bm := r.ss.Tracking("a"); bm == nil || !marked(bm, failedAt) {
		t.Errorf("a suspended for its failed write: the region is not in its bitmap (%v)", bm)
	}
}

// regionsCover says whether one of the regions rs ([offset, length])
// holds off.
func regionsCover(rs [][2]int64, off int64) bool {
	for _, r := range rs {
		if r[0] <= off && off < r[0]+r[1] {
			return true
		}
	}
	return false
}

// markCounter is a subsystem that counts its bounded markers (MarkWithin)
// and runs after once a copy has been captured and read.
type markCounter struct {
	*subsystem.Subsystem
	after func()
	marks atomic.Int64
}

func (c *markCounter) Copy(ctx context.Context, vol string, off, length int64) error {
	err := c.Subsystem.Copy(ctx, vol, off, length)
	c.after()
	return err
}

func (c *markCounter) MarkWithin(vol string, m recordset.Marker, wait time.Duration) (int64, error) {
	c.marks.Add(1)
	return c.Subsystem.MarkWithin(vol, m, wait)
}

// TestACopysEndIsNotTriedAgainWhileItsLeaseWriteHangs: the timer's lease
// hangs once a's resync has copied its last region, no client's write
// waiting for it: the end's stamp is given up after the manager's wait,
// and not tried again while that same write of the lease hangs (each try
// holds the manager's lock as long, and leaves a renewal waiting behind
// the write). Once the disk answers, the end is stamped and a is duplex.
func TestACopysEndIsNotTriedAgainWhileItsLeaseWriteHangs(t *testing.T) {
	r := newLeaseRig(t, 64<<20)
	r.stop()
	<-r.runDone
	inEffect(t, r.mg, "the suspension of a", r.mg.Suspend("a"), "a", isSuspended)
	r.write("a", 0)
	var copied atomic.Bool
	mc := &markCounter{Subsystem: r.ss}
	mc.after = sync.OnceFunc(func() {
		// Hung, and the stamps past the mark on disk, but no write waits.
		r.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(r.dir, "lease"), Hang: r.held})
		r.clock.Add(int64(2 * time.Second))
		copied.Store(true)
	})
	r.mg.vols["a"] = Volume{Name: "a", Subsystem: mc, Size: leaseRigSize}
	inEffect(t, r.mg, "the resume of a", r.mg.Resume("a"), "a", isResumed)
	r.run()
	for end := time.Now().Add(10 * time.Second); !copied.Load(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("a's copy has not run 10 s after its resume")
		}
	}
	// The first try, given up after SaveWait, and then as long again
	// three times over, the manager's loop looking every 100 ms.
	time.Sleep(4*r.mg.operatorWait() + 200*time.Millisecond)
	if n := mc.marks.Load(); n > 1 {
		t.Errorf("a's copy end tried %d times while the write of the lease it was given up for hangs, want once", n)
	}
	if a := r.pairOf("a"); a.State != Pending || a.CopyEnd != 0 {
		t.Errorf("a while its end waits: %s, end %d; want pending, no end", a.State, a.CopyEnd)
	}
	r.stop()
	select {
	case <-r.runDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the manager's loop has not stopped 5 s after asked")
	}
	r.release()
	r.run()
	r.waitPair("a", "with its copy's end stamped", func(p Pair) bool { return p.CopyEnd != 0 })
	r.mv.ackAll(r.tm)
	r.waitPair("a", "duplex", func(p Pair) bool { return p.State == Duplex })
}
