package pair

import (
	"errors"
	"strings"
	"testing"
	"time"

	"duplex/mover"
)

// staleRoomMover is a mover whose link is down, the secondary's free
// journal space being what it last reported, age ago.
type staleRoomMover struct {
	*memMover
	free uint64
	age  time.Duration
}

func (m *staleRoomMover) Stats() mover.Stats {
	st := m.memMover.Stats()
	st.Connected = false
	st.Acked.JournalFree = m.free
	st.JournalFreeAt = time.Now().Add(-m.age)
	return st
}

// TestResumeWhileTheLinkIsDownSaysTheRoomIsStale: the secondary stopped on a
// full journal disk (it reported no room), and the link is down. It may be
// restarted with space freed at any time, and the primary learns its room
// only once it links again. A consistent resume asked meanwhile is still
// refused (a resync must not start that the journal may not hold, and the
// room is known again only at link-up), but the refusal must not state the
// secondary's last word as its room now: it says the figure is from when
// the link was last up, how old it is, and that the link is down.
func TestResumeWhileTheLinkIsDownSaysTheRoomIsStale(t *testing.T) {
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
	r.mg.mover = &staleRoomMover{memMover: r.mv, free: 1, age: 42 * time.Second}

	err := r.mg.Resume("a")
	if !errors.Is(err, ErrNoJournalRoom) {
		t.Fatalf("resume of a while the link is down and the secondary last reported no journal room: %v, want a refusal", err)
	}
	msg := err.Error()
	for _, want := range []string{"link is down", "when the link was last up", "42s ago"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q does not say %q: the operator who freed the space reads a condition that may no longer hold", msg, want)
		}
	}
	if p := r.pair("a"); p.State != Suspended || !strings.Contains(p.Waiting, "link was last up") {
		t.Errorf("pair a %+v: want it suspended, its note saying the figure is from when the link was last up", p)
	}
}
