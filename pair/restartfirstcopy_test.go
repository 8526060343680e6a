package pair

import "testing"

// TestAFirstCopyWaitingWithARestartsResyncsSaysWhy: a primary killed with
// one pair (f) in its first copy and another (a) whose activity-log
// regions do not fit the sidefile suspends both at the restart, a's resync
// waiting for the secondary's journal room. f's first copy needs no room
// (the secondary holds nothing for it): it waits only to resume with a.
// Its reason and note must say so, not that its own resync waits for a
// room report, which no room check ever clears for a first copy: with the
// link up and a's resync refused for lack of room, f would show no reason
// at all for staying suspended.
func TestAFirstCopyWaitingWithARestartsResyncsSaysWhy(t *testing.T) {
	r := newRig(t, 16*twinRegion, 3<<19, "a", "f")
	r.settle()
	if _, err := r.mg.Delete("f"); err != nil {
		t.Fatal(err)
	}
	if err := r.mg.Add("f"); err != nil {
		t.Fatal(err)
	}
	r.saveAndClean()
	r.write("a", 0, 4096) // marks a region of the log as large as the sidefile
	mv := r.restartUnlinked()
	if p := r.pair("a"); p.State != Suspended || p.Reason != reasonRestartResync {
		t.Fatalf("setup: pair a %+v right after the restart: want it suspended, its resync waiting for the room", p)
	}
	if p := r.pair("f"); p.State != Suspended || !p.FirstCopy || p.Reason != reasonRestartTogether || p.Waiting != "" {
		t.Errorf("pair f %+v right after the restart: want its first copy suspended, saying it waits to resume with the others, with no note of a room of its own", p)
	}
	r.resumeOnceLinked(mv, "a", "f")
	r.settle()
}
