package pair

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/disk"
	"duplex/sidefile"
	"duplex/timer"
)

// TestAKillWhileTheSessionsDropOrItsMarkersWaitCopiesTheWritesDropped:
// the session suspends every pair for the link down with the sidefile
// full, a's write acknowledged and held by the mover, and the timer's
// lease hangs as the drop begins (its own stamp waits) or as it ends
// (the markers announced again wait). Meanwhile, before and after the
// operator's resume of b is refused for the lease, a kill would still
// have the next start copy a's write: its region is marked in the
// activity log on disk, or in a's bitmap saved.
func TestAKillWhileTheSessionsDropOrItsMarkersWaitCopiesTheWritesDropped(t *testing.T) {
	for _, at := range []string{"drop", "markers"} {
		t.Run(at, func(t *testing.T) {
			r := newLeaseRigLogged(t, sidefile.Cost(1<<19), true) // never room for 1 MiB: full
			r.ss.SetActivityLog(r.al)
			const dropped = 3 * leaseRigLogRegion
			r.write("a", dropped)
			hung := make(chan struct{})
			hang := sync.OnceFunc(func() {
				r.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(r.dir, "lease"), Hang: r.held})
				r.clock.Add(int64(2 * time.Second))
				close(hung)
			})
			if at == "drop" {
				r.mv.beforeDrop = hang
			} else {
				r.mv.afterDrop = hang
			}
			r.mv.connected.Store(false)
			select {
			case <-hung:
			case <-time.After(10 * time.Second):
				t.Fatal("the session has not suspended itself 10 s after the link went down with the sidefile full")
			}
			time.Sleep(300 * time.Millisecond)
			check := func(when string) {
				t.Helper()
				for end := time.Now().Add(5 * time.Second); !r.copiedAfterAKill("a", dropped); time.Sleep(20 * time.Millisecond) {
					if time.Now().After(end) {
						t.Fatalf("%s: a kill now would not copy a's write dropped at %d", when, dropped)
					}
				}
			}
			check("the " + at + " waiting for the lease")
			if err := r.mg.Resume("b"); err == nil || !strings.Contains(err.Error(), "timer's lease") {
				t.Fatalf("the resume of b while the %s waits for the lease: %v, want it refused naming the lease", at, err)
			}
			check("the resume of b refused")
			r.release()
			check("the disk answered")
			leaseWritten(t, r.tm, filepath.Join(r.dir, "lease"))
		})
	}
}

// leaseWritten waits for the write of tm's lease in dir, once its disk
// answers, to end and leave no temporary file: not after the test's
// directory is removed.
func leaseWritten(t *testing.T, tm *timer.Timer, dir string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		tmp, _ := filepath.Glob(filepath.Join(dir, "*.tmp*"))
		if d, _ := tm.LeaseWait(); d == 0 && len(tmp) == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("the write of the timer's lease has not ended 10 s after its disk answered (%v)", tmp)
		}
	}
}
