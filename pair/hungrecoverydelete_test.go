package pair

import (
	"testing"
	"time"
)

// TestDeletingAPairWhoseRecoveryCopyHungClaimsNoTime: after a crash, the
// recovery of a's regions is announced to the secondary as a resync, which
// it holds every volume for, and one of a's copies hangs: a is suspended
// part-way through that resync, the region copied before the hang on its
// way to the secondary, the region hung not. Deleted now, a ends the
// secondary's hold, which applies the recovery's copies over the image it
// kept: a mix of before and after the crash, consistent as of no time, as
// for any resync deleted part-way (TestDeleteDuringAResyncClaimsNoTime).
func TestDeletingAPairWhoseRecoveryCopyHungClaimsNoTime(t *testing.T) {
	const logRegion = 1 << 20 // the activity log's
	r := newRig(t, 4*logRegion, 8<<20, "a", "b")
	r.settle()
	r.saveAndClean()
	r.write("a", 0, 4096)
	r.write("a", 2*logRegion, 4096)
	hung := make(chan struct{})
	t.Cleanup(func() { close(hung) })
	r.ss.mu.Lock()
	r.ss.hangs = func(vol string, off int64) bool { return vol == "a" && off >= logRegion }
	r.ss.hung = hung
	r.ss.mu.Unlock()
	r.opts.CopyReadWait = 50 * time.Millisecond
	r.crash()
	if !r.recovers("a", 0) || !r.recovers("a", 2*logRegion) {
		t.Fatalf("the written regions are not recovered: %v", r.opts.Recovered)
	}
	if a := r.pair("a"); a.State != Suspended || a.Reason != reasonCopyReadHung {
		t.Fatalf("pair a, its recovery copy hung: %+v, want suspended saying why", a)
	}
	r.mg.suspendAbandoned() // the mover's first cut gives the copy up
	// The secondary journals the recovery's copies and holds them.
	r.mv.hold()
	r.deletesClaimingNoTime(t, "deleted part-way through the resync of its crash recovery", "the recovery's copies")
}
