package pair

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/disk"
	"duplex/sidefile"
)

// TestAResumeWhileTheMarkersWaitForTheLeaseIsRefusedBesideASlowSave: the
// session suspends every pair for the link down with the sidefile full,
// and the markers it announces again after its drop wait for the timer's
// lease, hung; the save of the pair state after the suspension is slow
// (held past SaveWait, as a loaded disk's fsyncs may be). The operator's
// resume of b, and of every pair, is refused naming the lease, as it is
// once that save is over: not answered "not yet in effect, it takes
// effect once the save ends", which it does not while the markers wait
// (the save ended, it is refused for them, b left suspended, the operator
// told otherwise).
func TestAResumeWhileTheMarkersWaitForTheLeaseIsRefusedBesideASlowSave(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(map[bool]string{false: "b", true: "all"}[all], func(t *testing.T) {
			r := markersWaitBesideASlowSave(t)
			what, err := "the resume of b", error(nil)
			if all {
				what = "the resume of every pair"
				_, err = r.mg.ResumeAll()
			} else {
				err = r.mg.Resume("b")
			}
			if err == nil || errors.Is(err, ErrSaveHung) || !strings.Contains(err.Error(), "timer's lease") {
				t.Errorf("%s while the markers wait for the lease, a save of the pair state under way: %v, want it refused naming the lease", what, err)
			}
			r.release()
			leaseWritten(t, r.tm, filepath.Join(r.dir, "lease"))
			if b := r.pairOf("b"); b.State != Suspended {
				t.Errorf("b, its resume refused, is %s once the disks answered, want suspended", b.State)
			}
		})
	}
}

// markersWaitBesideASlowSave makes a lease rig whose session suspended
// itself (the link down, the sidefile full) with a's bitmap changed, and
// holds both the timer's lease and the pair state's save after the drop:
// it returns once the markers announced again are put off for the lease
// and the save has waited SaveWait.
func markersWaitBesideASlowSave(t *testing.T) *leaseRig {
	t.Helper()
	r := newLeaseRig(t, sidefile.Cost(1<<19)) // never room for 1 MiB: full
	// Dropped, it changes a's bitmap: the save after the drop writes.
	r.write("a", 64<<10)
	hung := make(chan struct{})
	r.mv.afterDrop = sync.OnceFunc(func() {
		r.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(r.dir, "lease"), Hang: r.held})
		r.stateFS.Inject(disk.Fault{Op: disk.OpWrite, Under: r.state, Hang: r.held})
		r.clock.Add(int64(2 * time.Second))
		close(hung)
	})
	r.mv.connected.Store(false)
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("the session has not suspended itself 10 s after the link went down with the sidefile full")
	}
	waitUntil(t, 10*time.Second, "the markers announced again to be put off, and the pair state's save to wait SaveWait", func() bool {
		return strings.Contains(r.logs.String(), "announced again after its drop, waits for the write of the timer's lease") &&
			r.mg.SaveUnderWay() >= r.mg.operatorWait()
	})
	return r
}
