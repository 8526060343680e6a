package pair

import (
	"context"
	"syscall"
	"testing"
	"time"

	"duplex/actlog"
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
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.write("a", 0)
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
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
