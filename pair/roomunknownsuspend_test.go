package pair

import (
	"strings"
	"testing"
)

// A resume asked before the secondary reported its journal room waits for
// it, and a suspend meanwhile cancels the wait: the pair no longer resumes
// by itself. Its note must say so, not go on saying that the resync waits
// for the secondary's journal room and starts once the link is up: suspend
// clears Auto and Reason but leaves Waiting, which status shows as the
// volume's note, so that once the link is up and the room reported, with
// the pair suspended by hand and going nowhere, status still says its
// resync waits for the secondary to report its room, the link not up since
// the primary started.
func TestSuspendWhileAwaitingTheRoomClearsTheNote(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.settle()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	for i := range 64 {
		r.write("a", int64(i)*twinRegion, 4096)
	}
	mv := &restartedMover{memMover: r.mv}
	r.mg.mover = mv
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	if p := r.pair("a"); p.State != Suspended || !p.Auto {
		t.Fatalf("pair a %+v: want it waiting for the room", p)
	}
	// The operator changes their mind: suspended by hand again.
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mg.mu.Lock()
	need := r.mg.roomFor(64*twinRegion, 64)
	r.mg.mu.Unlock()
	mv.link(uint64(need) * 2)
	r.mg.autoSuspend()
	p := r.pair("a")
	if p.State != Suspended || p.Auto {
		t.Fatalf("pair a %+v: a suspend while it waited for the room should have kept it suspended, by hand", p)
	}
	if strings.Contains(p.Waiting, "journal room") {
		t.Fatalf("pair a, suspended by hand with the link up and the room reported, still says %q", p.Waiting)
	}
}
