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

// TestAChangeMadeOnceTheStopGaveTheLeaseUpIsNotSaidWritten: the markers
// the session announces again after its drop wait for the timer's lease,
// hung, and are put off; the stop gives the lease up (timer.Abandon),
// its write not ended, and goes on. Once the disk answers, the markers
// take their stamps, but the lease was never written: the log must not
// say they were made once it was, and says it was given up.
func TestAChangeMadeOnceTheStopGaveTheLeaseUpIsNotSaidWritten(t *testing.T) {
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
	for end := time.Now().Add(10 * time.Second); !strings.Contains(r.logs.String(), "announced again after its drop, waits"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the markers announced again are not put off 10 s after the lease hung:\n%s", r.logs.String())
		}
	}
	r.stop()
	<-r.runDone
	r.tm.Abandon() // the stop's, the lease's write not ended
	r.release()
	for end := time.Now().Add(10 * time.Second); !strings.Contains(r.logs.String(), "announced again after its drop, made"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the markers announced again are not said made 10 s after the disk answered:\n%s", r.logs.String())
		}
	}
	for _, l := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(l, "announced again after its drop, made") {
			t.Logf("%s", l)
			if strings.Contains(l, "the timer's lease written") || !strings.Contains(l, "given up") {
				t.Errorf("the markers made once the stop gave the lease up, its write never ended, are said made as:\n%s\nwant: the lease given up, not written", l)
			}
		}
	}
}
