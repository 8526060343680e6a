package pair

import (
	"strings"
	"testing"

	"duplex/bitmap"
)

// TestRestartResyncWaitsForTheJournalRoom: a primary killed in a run
// without an activity log copies every pair in full when it restarts (its
// acknowledged writes may be marked nowhere): a resync the secondary holds
// every volume for, as an operator's resume is. An operator's resume waits
// for the secondary to report its journal room and is refused when the
// resync does not fit (TestResumeBeforeTheRoomIsKnownWaitsForIt); the
// resync the primary starts by itself must be held to the same check, not
// started at once on a room nobody knows: the secondary would hold its
// volumes for a copy its journal may not take, and give the hold up near
// its end, the volumes losing their consistent image with no refusal ever
// said.
func TestRestartResyncWaitsForTheJournalRoom(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.settle()
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}
	// kill -9; the restarted primary cannot open its activity log: every
	// pair is to copy in full, and the link is not up yet.
	r.ss.mu.Lock()
	r.ss.tracking, r.ss.al = map[string]*bitmap.Bitmap{}, nil
	r.ss.mu.Unlock()
	r.mv.mu.Lock()
	r.mv.al = nil
	r.mv.mu.Unlock()
	r.opts.ActivityLog, r.opts.Recovered = nil, nil
	mv := &restartedMover{memMover: r.mv}
	mg, err := Open(r.opts, mv, r.vols)
	if err != nil {
		t.Fatal(err)
	}
	r.mg = mg
	for _, vol := range []string{"a", "b"} {
		if p := r.pair(vol); p.State == Pending {
			t.Fatalf("pair %s %+v right after the restart, before the secondary reported its journal room: its resync started unchecked", vol, p)
		}
		if p := r.pair(vol); !strings.Contains(p.Waiting, "journal room") {
			t.Errorf("pair %s %+v: want its note to say the resync waits for the secondary's journal room", vol, p)
		}
	}

	// Linked, the secondary reports too little room for both, held
	// together: neither starts, and the notes give the figures.
	r.mg.mu.Lock()
	need := r.mg.roomFor(2*64*twinRegion, 2*64)
	r.mg.mu.Unlock()
	mv.link(uint64(need) / 2)
	r.mg.autoSuspend()
	for _, vol := range []string{"a", "b"} {
		if p := r.pair(vol); p.State == Pending || !strings.Contains(p.Waiting, "free") {
			t.Fatalf("pair %s %+v once the secondary reported %d bytes free for resyncs needing %d: want it not started, its note giving the figures", vol, p, need/2, need)
		}
	}

	// Room enough: the resyncs start, and complete.
	mv.link(uint64(need) * 2)
	r.mg.autoSuspend()
	for _, vol := range []string{"a", "b"} {
		if p := r.pair(vol); p.State != Pending {
			t.Fatalf("pair %s %+v once the secondary reported room enough: want its resync started", vol, p)
		}
	}
	r.settle()
}

// TestLargeCrashRecoveryWaitsForTheJournalRoom: the regions a crash
// recovery copies, too many for the sidefiles at once, are copied as a
// resync the secondary holds its volumes for; it waits for the secondary's
// journal room as an operator's resume does.
func TestLargeCrashRecoveryWaitsForTheJournalRoom(t *testing.T) {
	r := newRig(t, 16*twinRegion, 3<<19, "a", "b")
	r.settle()
	r.saveAndClean()
	r.write("a", 0, 4096) // marks a region of the log as large as the sidefile
	mv := r.restartUnlinked()
	if !r.recovers("a", 0) {
		t.Fatalf("setup: the written region is not recovered: %v", r.opts.Recovered)
	}
	p := r.pair("a")
	if p.State == Pending {
		t.Fatalf("pair a %+v right after the restart, before the secondary reported its journal room: its recovery's resync started unchecked", p)
	}
	if !marked(r.pendingRegions("a"), 0) || !strings.Contains(p.Waiting, "journal room") {
		t.Fatalf("pair a %+v: want the recovered regions kept to copy, and its note to say it waits for the secondary's journal room", p)
	}
	mv.link(1 << 40)
	r.mg.autoSuspend()
	if p := r.pair("a"); p.State != Pending || !marked(r.pendingRegions("a"), 0) {
		t.Fatalf("pair a %+v once the secondary reported room enough: want its recovery's resync started", p)
	}
	r.settle()
}

// TestRestartWaitingForRoomHoldsEveryPair: a primary killed with one pair
// (a) in the middle of a resync, one (b) whose activity-log regions do not
// fit the sidefile, one (c) duplex with nothing to copy, and one (d)
// suspended by hand. b's resync waits for the secondary's journal room;
// a's, continued at once, would end before b's begins, and c's writes
// would be applied at the secondary while b stays as of its suspension:
// the secondary's volumes would not be at one time. Every pair but d is
// suspended at the restart, by the session, and resumes with the others.
func TestRestartWaitingForRoomHoldsEveryPair(t *testing.T) {
	r := newSetRig(t)
	// kill -9, the link not up after the restart.
	mv := r.restartUnlinked()
	for _, vol := range []string{"a", "b", "c"} {
		if p := r.pair(vol); p.State != Suspended || !p.Auto {
			t.Errorf("pair %s %+v right after the restart: want it suspended by the session with the resync that waits for the journal room", vol, p)
		}
	}
	if !marked(r.pendingRegions("a"), 2*twinRegion) || !marked(r.pendingRegions("b"), 0) {
		t.Errorf("after the restart: a's resync's regions or b's recovered ones are not kept to copy")
	}
	if p := r.pair("c"); p.Reason != reasonRestartTogether {
		t.Errorf("pair c %+v: want its reason to say it waits with the others", p)
	}
	if p := r.pair("d"); p.State != Suspended || p.Auto {
		t.Errorf("pair d %+v: suspended by hand, want it still the operator's", p)
	}
	r.resumeOnceLinked(mv, "a", "b", "c")
	r.settle()
	if p := r.pair("d"); p.State != Suspended {
		t.Errorf("pair d %+v after the others resumed: want it still suspended", p)
	}
}

// newSetRig is the primary of TestRestartWaitingForRoomHoldsEveryPair just
// before its kill -9: a in the middle of a resync (its third region to
// copy), b with a region of the activity log as large as the sidefile (at
// 0), c duplex with nothing to copy, and d suspended by hand.
func newSetRig(t *testing.T) *rig {
	t.Helper()
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
	r.write("b", 0, 4096)
	return r
}
