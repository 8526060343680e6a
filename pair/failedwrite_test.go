package pair

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"duplex/subsystem"
)

// TestAWriteTheVolumeFailsSuspendsItsPair: a write to a's volume is
// captured, then the volume fails it (EIO). The secondary gets its data,
// which the volume may never have taken: a is suspended, saying why, the
// write's region in its bitmap for the resume to copy again; b stays
// duplex. Once resumed, a is duplex again.
func TestAWriteTheVolumeFailsSuspendsItsPair(t *testing.T) {
	r := aWriteTheVolumeFailed(t)
	r.mg.suspendWriteFailed()
	a := r.pair("a")
	if a.State != Suspended || a.Auto || !strings.Contains(a.Reason, "write") || !strings.Contains(a.Reason, syscall.EIO.Error()) {
		t.Fatalf("pair a, a write its volume failed: %+v, want suspended, not to resume by itself, its reason naming the write's error", a)
	}
	if !marked(r.ss.Tracking("a"), 2*twinRegion) {
		t.Fatal("the region of the write the volume failed is not in a's bitmap")
	}
	bDuplexAResumesTheFailedWritesRegion(t, r)
}

// TestAWriteTheVolumeFailsJustBeforeACleanStopIsNotForgotten: a's volume
// fails a captured write, and the primary stops cleanly before the
// manager's watcher looked at the failures (it looks every 100 ms, and
// stops with Run). The stop records the pairs as they are, the activity
// log's marks mean nothing after a clean stop, so unless the stop acts on
// the failure, a restarts duplex with the secondary holding data the
// volume never took. Restarted, a is suspended for the write, the region
// in its bitmap, and its resume copies it.
func TestAWriteTheVolumeFailsJustBeforeACleanStopIsNotForgotten(t *testing.T) {
	r := aWriteTheVolumeFailed(t)
	if err := r.mg.Close(true); err != nil {
		t.Fatal(err)
	}
	if err := r.al.Clean(); err != nil {
		t.Fatal(err)
	}
	if err := r.al.Close(); err != nil {
		t.Fatal(err)
	}
	r.crashed()
	r.open()
	a := r.pair("a")
	if a.State != Suspended || !strings.Contains(a.Reason, "write") || !marked(r.pendingRegions("a"), 2*twinRegion) {
		t.Fatalf("pair a, restarted after a clean stop just after its volume failed a write: %+v, regions %v; "+
			"want suspended for the write, its region to copy", a, r.pendingRegions("a"))
	}
	bDuplexAResumesTheFailedWritesRegion(t, r)
}

// aWriteTheVolumeFailed is a rig of pairs a and b, duplex, after a write
// to a's volume at 2*twinRegion was captured and shipped, and the volume
// then failed it (EIO).
func aWriteTheVolumeFailed(t *testing.T) *rig {
	t.Helper()
	r := newRig(t, 4*twinRegion, 8<<20, "a", "b")
	r.settle()
	r.write("a", 2*twinRegion, 4096)
	r.ss.mu.Lock()
	r.ss.failed = append(r.ss.failed, subsystem.FailedWrite{Volume: "a", Offset: 2 * twinRegion, Length: 4096,
		Err: fmt.Errorf("volume a: write 4096 at %d: %w", 2*twinRegion, syscall.EIO)})
	r.ss.mu.Unlock()
	r.mv.ship()
	return r
}

// bDuplexAResumesTheFailedWritesRegion checks that b went on duplex and
// that a's resume copies the one region of the failed write, no more.
func bDuplexAResumesTheFailedWritesRegion(t *testing.T, r *rig) {
	t.Helper()
	if b := r.pair("b"); b.State != Duplex {
		t.Fatalf("pair b: %+v, want duplex", b)
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	if got := r.pendingRegions("a").Count(); got != 1 {
		t.Fatalf("a resumed copies %d regions, want the one the failed write was in", got)
	}
	r.settle()
}
