package pair

import (
	"fmt"
	"strings"
	"sync"
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
	r.writeTheVolumeFails("a", 2*twinRegion)
	r.mv.ship()
	return r
}

// writeTheVolumeFails writes 4096 bytes to vol at off, captured, and has
// the volume fail the write (EIO), as subsystem.Write reports it.
func (r *rig) writeTheVolumeFails(vol string, off int64) {
	r.t.Helper()
	r.write(vol, off, 4096)
	r.volumeFailedTheWrite(vol, off)
}

// volumeFailedTheWrite has the volume fail the write of 4096 bytes at off
// captured already.
func (r *rig) volumeFailedTheWrite(vol string, off int64) {
	r.ss.mu.Lock()
	defer r.ss.mu.Unlock()
	r.ss.failed = append(r.ss.failed, subsystem.FailedWrite{Volume: vol, Offset: off, Length: 4096,
		Err: fmt.Errorf("volume %s: write 4096 at %d: %w", vol, off, syscall.EIO)})
}

// suspendedForTheWrite checks that vol is suspended for a write its
// volume failed, by the session, not to resume by itself.
func suspendedForTheWrite(t *testing.T, r *rig, vol string) Pair {
	t.Helper()
	p := r.pair(vol)
	if p.State != Suspended || p.Auto || !strings.Contains(p.Reason, "write") || !strings.Contains(p.Reason, syscall.EIO.Error()) {
		t.Fatalf("pair %s, a write its volume failed: %+v, want suspended, not to resume by itself, its reason naming the write's error", vol, p)
	}
	return p
}

// TestAWriteTheVolumeFailsDuringTheFirstCopy: pair a is pending, its
// first copy part done, when a write to it (to a region copied already)
// is captured and the volume fails it. a is suspended for the write as a
// duplex pair is, still without a full copy at the secondary; its resume
// copies the regions its copy had left and the write's, and it becomes
// duplex. b, after it, copies on.
func TestAWriteTheVolumeFailsDuringTheFirstCopy(t *testing.T) {
	const regions = 64
	r := newRig(t, regions*twinRegion, 64<<20, "a", "b")
	r.steps(1) // one batch of a's copy: 16 regions
	left := r.pendingRegions("a").Count()
	if left == 0 || left == regions || marked(r.pendingRegions("a"), 2*twinRegion) {
		t.Fatalf("a's first copy after one batch: %d of %d regions left, region 2 among them: %v; want it part done, region 2 copied",
			left, regions, marked(r.pendingRegions("a"), 2*twinRegion))
	}
	r.writeTheVolumeFails("a", 2*twinRegion)
	r.mv.ship()
	r.mg.suspendWriteFailed()
	if a := suspendedForTheWrite(t, r, "a"); !a.FirstCopy {
		t.Fatalf("pair a, suspended in its first copy: %+v, want still in it (the secondary has no full copy)", a)
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	if got := r.pendingRegions("a").Count(); got != left+1 || !marked(r.pendingRegions("a"), 2*twinRegion) {
		t.Fatalf("a resumed copies %d regions, region 2 among them: %v; want the %d its copy had left and the failed write's",
			got, marked(r.pendingRegions("a"), 2*twinRegion), left)
	}
	r.settle()
	for _, name := range []string{"a", "b"} {
		if p := r.pair(name); p.State != Duplex || p.FirstCopy {
			t.Fatalf("pair %s: %+v, want duplex with its first copy done", name, p)
		}
	}
}

// TestAWriteTheVolumeFailsInARegionBeingCopied: pair a's copy is reading
// region 2 of its volume when a write to that region is captured, the
// volume fails it, and the manager's watcher looks. The copy, whatever it
// read, ends with the suspension: the region is not taken for copied but
// stays in a's bitmap with the ones after it, and the resume copies them.
func TestAWriteTheVolumeFailsInARegionBeingCopied(t *testing.T) {
	r := newRig(t, 4*twinRegion, 8<<20, "a", "b")
	var once sync.Once
	r.ss.mu.Lock()
	r.ss.read = func(vol string, off int64) {
		if vol == "a" && off == 2*twinRegion {
			once.Do(func() {
				r.writeTheVolumeFails("a", 2*twinRegion)
				r.mg.suspendWriteFailed()
			})
		}
	}
	r.ss.mu.Unlock()
	r.steps(1)
	suspendedForTheWrite(t, r, "a")
	for _, reg := range []int64{2, 3} {
		if !marked(r.pendingRegions("a"), reg*twinRegion) {
			t.Fatalf("pair a, suspended while its copy read region 2: region %d not in its bitmap (%d marked)", reg, r.pendingRegions("a").Count())
		}
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	for _, name := range []string{"a", "b"} {
		if p := r.pair(name); p.State != Duplex {
			t.Fatalf("pair %s: %+v, want duplex", name, p)
		}
	}
}

// TestAWriteTheVolumeFailsDuringAResync: a's resync (of a region written
// while it was suspended) is pending when a captured write to another
// region fails. a is suspended again for the write, both regions in its
// bitmap, and its next resume copies both and makes it duplex, consistent.
func TestAWriteTheVolumeFailsDuringAResync(t *testing.T) {
	r := newRig(t, 4*twinRegion, 8<<20, "a", "b")
	r.settle()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.write("a", 1*twinRegion, 4096)
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.writeTheVolumeFails("a", 3*twinRegion)
	r.mv.ship()
	r.mg.suspendWriteFailed()
	suspendedForTheWrite(t, r, "a")
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	if bm := r.pendingRegions("a"); bm.Count() != 2 || !marked(bm, 1*twinRegion) || !marked(bm, 3*twinRegion) {
		t.Fatalf("a resumed copies %d regions, want 2: the resync's and the failed write's", bm.Count())
	}
	r.settle()
	if a := r.pair("a"); a.State != Duplex || a.Consistent == 0 {
		t.Fatalf("pair a: %+v, want duplex, consistent as of a time", a)
	}
}

// TestAWriteTheVolumeFailsOnASuspendedPair: a write to a was captured
// while a was duplex, a was suspended by hand, and then the volume failed
// the write. The suspension's bitmap took only the writes after it: the
// failed write's region is marked there too, so the resume copies what
// the volume holds; the suspension stays the operator's.
func TestAWriteTheVolumeFailsOnASuspendedPair(t *testing.T) {
	r := newRig(t, 4*twinRegion, 8<<20, "a", "b")
	r.settle()
	r.write("a", 2*twinRegion, 4096)
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	if marked(r.pendingRegions("a"), 2*twinRegion) {
		t.Fatal("a's bitmap took a write captured before the suspension")
	}
	r.volumeFailedTheWrite("a", 2*twinRegion)
	r.mg.suspendWriteFailed()
	if a := r.pair("a"); a.State != Suspended || a.Auto {
		t.Fatalf("pair a, suspended by hand, its volume failing a write: %+v, want suspended by hand", a)
	}
	bDuplexAResumesTheFailedWritesRegion(t, r)
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
