package pair

import (
	"context"
	"strings"
	"syscall"
	"testing"
)

// failReadsOfA has every copy read of a fail (a failing disk, EIO) until
// the test says the volume reads again (the function returned).
func (r *rig) failReadsOfA() (fixed func()) {
	r.ss.mu.Lock()
	r.ss.fails = func(vol string, _ int64) bool { return vol == "a" }
	r.ss.mu.Unlock()
	return func() {
		r.ss.mu.Lock()
		r.ss.fails = nil
		r.ss.mu.Unlock()
	}
}

// suspendedForTheReadError fails unless a is suspended, not to resume by
// itself, its reason naming the read's error, with the region at off in its
// bitmap.
func (r *rig) suspendedForTheReadError(t *testing.T, off int64) {
	t.Helper()
	a := r.pair("a")
	if a.State != Suspended || a.Auto || !strings.Contains(a.Reason, syscall.EIO.Error()) {
		t.Fatalf("pair a, its copy's read failed: %+v, want suspended, not to resume by itself, its reason naming the read's error", a)
	}
	if !marked(r.ss.Tracking("a"), off) {
		t.Fatalf("the region at %d of a whose read failed is not in its bitmap", off)
	}
}

// TestARecoveryCopyWhoseReadFailsDoesNotStopTheStart: after a crash, the
// read of one volume for the copy of its recovered regions fails (EIO, a
// failing disk). The primary starts all the same, as for a read that hangs:
// that pair suspended with the read's error as its reason, every region it
// recovered in its bitmap and still marked in the activity log (through
// another crash too), the other pair recovered and duplex. Once the volume
// reads again, a resume copies the regions.
func TestARecoveryCopyWhoseReadFailsDoesNotStopTheStart(t *testing.T) {
	r := writtenSinceClean(t)
	fixed := r.failReadsOfA()
	r.crashed()
	mg, err := Open(r.opts, r.mv, r.vols)
	if err != nil {
		t.Fatalf("the primary does not start, one volume's recovery read failing: %v", err)
	}
	r.mg = mg
	r.suspendedForTheReadError(t, twinRegion)
	if !marked(r.ss.Tracking("a"), 3*twinRegion) {
		t.Fatal("the recovered region not tried yet of a is not in its bitmap")
	}
	r.recoversBAndKeepsAsRegions(t, fixed)
}

// TestACopyWhoseReadFailsSuspendsItsPair: a first copy's read of one
// volume fails (EIO). The copier does not try that region for ever, the
// pair pending and its data zeroes shipped each time: the pair is suspended
// with the read's error as its reason, the region in its bitmap, and the
// other pair's copy goes on to duplex. Once the volume reads again, a
// resume copies the region.
func TestACopyWhoseReadFailsSuspendsItsPair(t *testing.T) {
	r := newRig(t, 4*twinRegion, 8<<20, "a", "b")
	fixed := r.failReadsOfA()
	for range 8 {
		r.mg.copyOne(context.Background())
		r.mv.ship()
		r.mg.promote()
	}
	r.suspendedForTheReadError(t, 0)
	r.settle()
	if b := r.pair("b"); b.State != Duplex {
		t.Fatalf("pair b: %+v, want duplex", b)
	}
	fixed()
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if a := r.pair("a"); a.State != Duplex {
		t.Fatalf("pair a resumed once its volume reads again: %+v, want duplex", a)
	}
}
