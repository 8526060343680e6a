package pair

import (
	"testing"

	"duplex/bitmap"
)

// TestRestartsBeforeAndDuringTheJointResume: the primary of
// TestRestartWaitingForRoomHoldsEveryPair is killed again while its pairs
// wait for the link, after a write to c (duplex with nothing to copy at
// the first restart) that no save of the bitmaps covered, and once more
// right after the pairs resumed together. Each restart must keep the set
// whole: the pairs the first restart suspended still wait together and
// resume together, with c's write and the regions of a's and b's resyncs
// to copy; d, suspended by hand, stays the operator's; and a restart after
// the joint resume goes on with every resync at once, none left waiting.
func TestRestartsBeforeAndDuringTheJointResume(t *testing.T) {
	r := newRig(t, 16*twinRegion, 3<<19, "a", "b", "c", "d")
	r.settle()
	r.saveAndClean()
	if err := r.mg.Suspend("d"); err != nil {
		t.Fatal(err)
	}
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.write("a", 2*twinRegion, 4096)
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.write("b", 0, 4096) // marks a region of the log as large as the sidefile
	restart := func() *restartedMover {
		r.ss.mu.Lock()
		r.ss.tracking = map[string]*bitmap.Bitmap{}
		r.ss.mu.Unlock()
		r.openLog()
		mv := &restartedMover{memMover: r.mv}
		mg, err := Open(r.opts, mv, r.vols)
		if err != nil {
			t.Fatal(err)
		}
		r.mg = mg
		return mv
	}
	restart()
	// Written while the pairs wait; kill -9 before any save covers it.
	r.write("c", 5*twinRegion, 4096)
	r.write("d", 7*twinRegion, 4096)
	mv := restart()
	for _, vol := range []string{"a", "b", "c"} {
		if p := r.pair(vol); p.State != Suspended || !p.Auto {
			t.Errorf("pair %s %+v after a second restart before the link was up: want it still suspended by the session, to resume with the others", vol, p)
		}
	}
	if p := r.pair("d"); p.State != Suspended || p.Auto {
		t.Errorf("pair d %+v after a second restart: suspended by hand, want it still the operator's", p)
	}
	for vol, off := range map[string]int64{"a": 2 * twinRegion, "b": 0, "c": 5 * twinRegion, "d": 7 * twinRegion} {
		if !marked(r.pendingRegions(vol), off) {
			t.Errorf("pair %s after a second restart: the region at %d (a resync's, or an acknowledged write's) is not kept to copy", vol, off)
		}
	}
	mv.link(1 << 40)
	r.mg.autoSuspend()
	for _, vol := range []string{"a", "b", "c"} {
		if p := r.pair(vol); p.State != Pending {
			t.Fatalf("pair %s %+v once the secondary reported room enough: want it resumed with the others", vol, p)
		}
	}
	// kill -9 right after the joint resume, nothing copied yet.
	restart()
	for _, vol := range []string{"a", "b", "c"} {
		if p := r.pair(vol); p.State != Pending {
			t.Errorf("pair %s %+v after a restart that followed the joint resume: want its resync going on at once", vol, p)
		}
	}
	for vol, off := range map[string]int64{"a": 2 * twinRegion, "b": 0, "c": 5 * twinRegion} {
		if !marked(r.pendingRegions(vol), off) {
			t.Errorf("pair %s after a restart that followed the joint resume: the region at %d is not kept to copy", vol, off)
		}
	}
	if p := r.pair("d"); p.State != Suspended || p.Auto {
		t.Errorf("pair d %+v: suspended by hand, want it still the operator's", p)
	}
	r.settle()
}
