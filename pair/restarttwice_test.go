package pair

import "testing"

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
	r := newSetRig(t)
	r.restartUnlinked()
	// Written while the pairs wait; kill -9 before any save covers it.
	r.write("c", 5*twinRegion, 4096)
	r.write("d", 7*twinRegion, 4096)
	mv := r.restartUnlinked()
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
	r.resumeOnceLinked(mv, "a", "b", "c")
	// kill -9 right after the joint resume, nothing copied yet.
	r.restartUnlinked()
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
