package pair

import (
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/mover"
)

// restartedMover is a memMover of a primary just restarted: until linked is
// set, the link has not been up in this run and the secondary has reported
// no journal room to it; once linked, it reports free bytes.
type restartedMover struct {
	*memMover
	mu     sync.Mutex
	linked bool
	free   uint64
}

func (m *restartedMover) Stats() mover.Stats {
	st := m.memMover.Stats()
	m.mu.Lock()
	defer m.mu.Unlock()
	st.Connected = m.linked
	st.Acked.JournalFree = 0
	st.JournalFreeAt = time.Time{}
	if m.linked {
		st.Acked.JournalFree, st.JournalFreeAt = m.free, time.Now()
		st.LastAckedTime = time.Now()
	}
	return st
}

func (m *restartedMover) link(free uint64) {
	m.mu.Lock()
	m.linked, m.free = true, free
	m.mu.Unlock()
}

// resumeOnceLinked brings the restarted primary's link up with room enough
// for every resync and checks that the pairs the restart suspended (vols)
// resume together.
func (r *rig) resumeOnceLinked(mv *restartedMover, vols ...string) {
	r.t.Helper()
	mv.link(1 << 40)
	r.mg.autoSuspend()
	for _, vol := range vols {
		if p := r.pair(vol); p.State != Pending {
			r.t.Fatalf("pair %s %+v once the secondary reported room enough: want it resumed with the others", vol, p)
		}
	}
}

// restartUnlinked kills the primary of r (kill -9: its tracking bitmaps
// and the manager go, the activity log is opened again) and restarts it
// with a mover whose link has not been up in the new run.
func (r *rig) restartUnlinked() *restartedMover {
	r.t.Helper()
	r.crashed()
	mv := &restartedMover{memMover: r.mv}
	mg, err := Open(r.opts, mv, r.vols)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mg = mg
	return mv
}

// TestResumeBeforeTheRoomIsKnownWaitsForIt: the primary restarted and the
// operator resumes a suspended pair before the link is up: the secondary
// has not reported its journal room to this run (the mover says 0). The
// room check took that 0 for "not answered" and let the resync start, its
// room never checked: the secondary holds every volume for it, and a hold
// its journal cannot take is given up near its end, the volumes losing
// their consistent image. The resync must wait, suspended and saying why,
// until the link is up and the secondary has reported its room; then it is
// checked: refused (still suspended, with the figures) when it does not
// fit, started when it does.
func TestResumeBeforeTheRoomIsKnownWaitsForIt(t *testing.T) {
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
		t.Fatalf("resume of a before the secondary reported its journal room: %v, want it accepted and held until the room is known", err)
	}
	p := r.pair("a")
	if p.State != Suspended {
		t.Fatalf("pair a is %s right after a resume asked before the secondary reported its journal room: its resync started unchecked", p.State)
	}
	if !strings.Contains(p.Waiting, "journal room") || !p.Auto {
		t.Errorf("pair a %+v: want it suspended until the link is up, resuming by itself, its note saying it waits for the secondary's journal room", p)
	}

	// Linked, the secondary reports too little room: still suspended, and
	// the note gives the figures.
	r.mg.mu.Lock()
	need := r.mg.roomFor(64*twinRegion, 64)
	r.mg.mu.Unlock()
	mv.link(uint64(need) / 2)
	r.mg.autoSuspend()
	if p := r.pair("a"); p.State != Suspended || !strings.Contains(p.Waiting, "free") {
		t.Fatalf("pair a %+v once the secondary reported %d bytes free for a resync needing %d: want it suspended, its note giving the figures", p, need/2, need)
	}

	// Room enough: the resync starts.
	mv.link(uint64(need) * 2)
	r.mg.autoSuspend()
	if p := r.pair("a"); p.State != Pending {
		t.Fatalf("pair a %+v once the secondary reported room enough: want its resync started", p)
	}
}
