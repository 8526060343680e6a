package pair

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"duplex/bitmap"
	"duplex/mover"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/volume"
)

// freeLinkMover is a linkMover whose secondary reports free journal room.
type freeLinkMover struct {
	linkMover
	free uint64
}

func (m *freeLinkMover) Stats() mover.Stats {
	st := m.linkMover.Stats()
	st.Acked.JournalFree = m.free
	return st
}

// TestResumeAfterALostInconsistentResyncNeedsJournalRoom: an operator's
// resume --inconsistent whose resync marker never reached the secondary
// (the session suspended itself with the link down, dropping what it held,
// that marker with it) leaves the primary taking the pair as consistent as
// of no time, while the secondary still holds the copy it had, consistent
// as of the first suspension, and does not name it inconsistent. A later
// plain resume announces a resync over that copy, for which the secondary
// holds the other volumes: its journal room must be checked as for any
// such resync, or the hold outgrows the journal and is given up, and the
// copy the secondary held consistent is lost after all.
func TestResumeAfterALostInconsistentResyncNeedsJournalRoom(t *testing.T) {
	dir := t.TempDir()
	const regions = 64
	const size = regions * bitmap.DefaultRegion
	vols := map[string]*volume.Volume{}
	for _, n := range []string{"a", "b"} {
		v, err := volume.Open(filepath.Join(dir, n+".img"), size)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		vols[n] = v
	}
	ss := subsystem.New("s1", timer.New(), sidefile.New(64<<20), vols, []string{"a", "b"})
	state := filepath.Join(dir, "pairs")
	os.MkdirAll(state, 0o755)
	b, _ := json.Marshal(persisted{Clean: true, Pairs: []*Pair{
		{Volume: "a", Subsystem: "s1", State: Duplex, Size: size},
		{Volume: "b", Subsystem: "s1", State: Duplex, Size: size},
	}})
	os.WriteFile(filepath.Join(state, "pairs.json"), b, 0o644)
	mv := &freeLinkMover{linkMover: linkMover{subs: []*subsystem.Subsystem{ss}}, free: 1 << 50}
	mv.connected.Store(true)
	mg, err := Open(Options{Dir: state, Logger: slog.New(slog.DiscardHandler)}, mv,
		[]Volume{{Name: "a", Subsystem: ss, Size: size}, {Name: "b", Subsystem: ss, Size: size}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if err := mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	ss.Drain() // the secondary has a's suspension
	for i := range int64(regions) {
		if err := ss.Write(ctx, "a", make([]byte, 4096), i*bitmap.DefaultRegion); err != nil {
			t.Fatal(err)
		}
	}
	if err := mg.ResumeInconsistent("a"); err != nil {
		t.Fatal(err)
	}
	// The link goes down; the session suspends itself and drops what it
	// held, the inconsistent resync's marker with it.
	mv.connected.Store(false)
	if !mg.suspendSession(reasonLinkDown, false) {
		t.Fatal("setup: the session did not suspend")
	}
	ss.Drain() // the suspensions announced again: the secondary has them
	if p := mg.Pairs()[0]; p.State != Suspended || !p.Inconsistent {
		t.Fatalf("setup: pair a %+v, want it suspended and taken as inconsistent", p)
	}
	mv.connected.Store(true)
	mg.mu.Lock()
	bm := ss.Tracking("a")
	need := mg.roomFor(bm.DirtyBytes(), bm.Count())
	mg.mu.Unlock()
	mv.free = uint64(need) / 4

	err = mg.Resume("a")
	if !errors.Is(err, ErrNoJournalRoom) {
		t.Fatalf("resume of pair a, whose inconsistent resync never reached the secondary (it holds a's copy consistent, and holds the others "+
			"for the resync this resume announces), with about %d bytes of journal needed and %d free: err %v, want a refusal for lack of room",
			need, mv.free, err)
	}
}
