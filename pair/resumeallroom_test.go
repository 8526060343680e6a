package pair

import (
	"errors"
	"testing"

	"duplex/mover"
)

// roomMover is a memMover whose secondary reports free journal room.
type roomMover struct {
	*memMover
	free uint64
}

func (m *roomMover) Stats() mover.Stats {
	st := m.memMover.Stats()
	st.Acked.JournalFree = m.free
	return st
}

// TestResumeAllChecksTheJournalRoomOfAllItsResyncs: resume --all starts the
// resyncs of every suspended pair together, and the secondary holds them
// all in one hold, journaled whole before any is applied. The journal room
// check must count them together: each one alone fits, all of them do not,
// and a hold that outgrows the journal is given up near its end, the
// resyncing volumes losing their consistent image, which is what the check
// is there to prevent.
func TestResumeAllChecksTheJournalRoomOfAllItsResyncs(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.settle()
	if _, err := r.mg.SuspendAll(); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	for _, vol := range []string{"a", "b"} {
		for i := range 64 {
			r.write(vol, int64(i)*twinRegion, 4096)
		}
	}
	r.mg.mu.Lock()
	one := r.mg.roomFor(64*twinRegion, 64)
	both := r.mg.roomFor(2*64*twinRegion, 2*64)
	r.mg.mu.Unlock()
	free := uint64(one+both) / 2 // room for one resync, not for both
	r.mg.mover = &roomMover{memMover: r.mv, free: free}

	names, err := r.mg.ResumeAll()
	if !errors.Is(err, ErrNoJournalRoom) {
		t.Fatalf("resume --all of a and b, each needing about %d bytes of journal and together %d, with %d free at the secondary: "+
			"resumed %v (err %v), want a refusal: the secondary holds both resyncs at once and gives the hold up before they end",
			one, both, free, names, err)
	}
}
