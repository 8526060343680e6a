package secondary

import (
	"bytes"
	"testing"
	"time"
)

// Groups a coupled secondary journaled past the Gate's limit and had not
// applied when it stopped (the applier skips them once the gate closes)
// are applied by the next start's replay once the limit has reached them:
// each is a consistent state of its own, and the history keeps each as a
// point, as it does applied while running. Replayed as one batch, the
// groups before the last were kept as parts of it: a time inside their
// span took the volumes (recover --at) and read views (NAME@TIME) back to
// the group before them all, without writes acknowledged long before that
// time.
func TestGroupsHeldAtAStopAreHistoryPointsAfterTheRestart(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	hist := historyOf(dir)
	gate := newTestGate(int64(time.Millisecond))
	r := openGateRigWith(t, dir, gate, hist)
	for seq := uint64(1); seq <= 5; seq++ {
		r.send(t, seq)
	}
	waitGate(t, "groups 1 to 5 journaled, group 1 applied", func() bool {
		st := r.sec.Stats()
		return st.JournaledGroup >= 5 && st.Group == 1
	})
	r.close(t)

	// The limit rose past them all (the mark was persisted) before the
	// stop let them be applied.
	r = openGateRigWith(t, dir, newTestGate(int64(5*time.Millisecond)), hist)
	waitGate(t, "group 5 applied after the restart", func() bool { return r.sec.Stats().Group == 5 })
	st := r.sec.Stats()
	if st.HistoryOldest == 0 || st.HistoryOldest > int64(2*time.Millisecond) || st.HistoryNewest != int64(5*time.Millisecond) {
		t.Errorf("history window %d..%d ns, want from group 2's time or before (%d) to group 5's (%d)",
			st.HistoryOldest, st.HistoryNewest, int64(2*time.Millisecond), int64(5*time.Millisecond))
	}
	// A read view at 3ms (NAME@TIME) reads group 3's state.
	want3 := []byte{1, 1, 2, 2, 3, 3, 0xEE, 0xEE, 0xEE, 0xEE}
	v, err := r.sec.PinAt(int64(3 * time.Millisecond))
	if err != nil {
		t.Fatalf("a view at 3ms: %v", err)
	}
	if got := blockBytes(t, func(p []byte, off int64) error { return v.ReadAt("vol1", p, off) }, 5); !bytes.Equal(got, want3) {
		t.Errorf("the view at 3ms reads blocks %v, want group 3's state %v", got, want3)
	}
	v.Close()
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	r.close(t)

	// recover --at 3ms reaches group 3.
	sec, vol := openStopped(t, dir, hist)
	defer vol.Close()
	defer sec.Close()
	got, err := sec.RecoverTo(int64(3 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if got.Group != 3 {
		t.Errorf("recover --at 3ms reached group %d, want 3", got.Group)
	}
	if b := blockBytes(t, func(p []byte, off int64) error { return sec.ReadAt("vol1", p, off) }, 5); !bytes.Equal(b, want3) {
		t.Errorf("recovered to 3ms: blocks %v, want group 3's state %v", b, want3)
	}
}
