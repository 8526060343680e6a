package pair

import "testing"

// TestAResyncStartedOnAnUnknownRoomDropsItsWaitingNote: the pairs a
// restart suspended wait for the secondary to report its journal room,
// their note saying so; the secondary comes up but cannot read its free
// space (it reports 0), and the resyncs start unchecked, as the secondary
// gives a hold up should its journal run short. Their note must not go on
// saying they wait for a room report with the link not up since the start:
// status would show that for pairs that are copying, the link up.
func TestAResyncStartedOnAnUnknownRoomDropsItsWaitingNote(t *testing.T) {
	r := newRig(t, 16*twinRegion, 3<<19, "a", "b")
	r.settle()
	r.saveAndClean()
	r.write("a", 0, 4096) // marks a region of the log as large as the sidefile
	mv := r.restartUnlinked()
	if p := r.pair("a"); p.State != Suspended || p.Waiting == "" {
		t.Fatalf("setup: pair a %+v right after the restart: want it suspended, waiting for the room", p)
	}
	mv.link(0)
	r.mg.autoSuspend()
	for _, vol := range []string{"a", "b"} {
		if p := r.pair(vol); p.State != Pending || p.Waiting != "" {
			t.Errorf("pair %s %+v once linked to a secondary that reports no figure: want its resync started, with no note of a wait", vol, p)
		}
	}
	r.settle()
	for _, vol := range []string{"a", "b"} {
		if p := r.pair(vol); p.Waiting != "" {
			t.Errorf("pair %s %+v duplex again: want no note of a wait", vol, p)
		}
	}
}
