package pair

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/disk"
	"duplex/sidefile"
)

// TestALinkDownWithAHungLeaseLogsNoSuspensionPutOffOnceMade: the link
// down with the sidefile full, the session suspends every pair, and the
// timer's lease hangs as the drop ends, its markers announced again put
// off. The link stays down and the sidefile full, but every pair is
// suspended already: the log says the markers wait, and neither that
// the session's suspension for the link down is put off (there is
// nothing left to suspend) nor, once the disk answers, that it was made
// then (it was made before the lease hung).
func TestALinkDownWithAHungLeaseLogsNoSuspensionPutOffOnceMade(t *testing.T) {
	r := newLeaseRigLogged(t, sidefile.Cost(1<<19), true)
	r.ss.SetActivityLog(r.al)
	r.write("a", 3*leaseRigLogRegion)
	hung := make(chan struct{})
	r.mv.afterDrop = sync.OnceFunc(func() {
		r.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(r.dir, "lease"), Hang: r.held})
		r.clock.Add(int64(2 * time.Second))
		close(hung)
	})
	r.mv.connected.Store(false)
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("the session has not suspended itself 10 s after the link went down with the sidefile full")
	}
	// The session's watcher looks every few milliseconds, the lease known
	// hung after SaveWait.
	time.Sleep(4 * r.mg.operatorWait())
	r.release()
	r.waitSuspended("a", true)
	for end := time.Now().Add(10 * time.Second); !strings.Contains(r.logs.String(), "announced again after its drop, made"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the markers announced again are not said made 10 s after the disk answered:\n%s", r.logs.String())
		}
	}
	time.Sleep(4 * r.mg.operatorWait())
	for _, l := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(l, "the session's suspension for the link down") {
			t.Errorf("the log says the session's suspension for the link down waited for the lease, every pair suspended before it hung:\n%s", l)
		}
	}
}
