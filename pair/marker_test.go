package pair

import (
	"path/filepath"
	"testing"

	"duplex/mover"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/volume"
)

// dropMover is a mover whose link is down: Drop drains the subsystems and
// hands every captured update to mark, as mover.Drop does.
type dropMover struct {
	noneAbandoned
	subs    []*subsystem.Subsystem
	dropped []recordset.Update
}

func (m *dropMover) Stats() mover.Stats { return mover.Stats{} }
func (m *dropMover) Drop(mark func(recordset.Update)) {
	for _, ss := range m.subs {
		ups, _, _ := ss.Drain()
		var cost int64
		for _, u := range ups {
			mark(u)
			m.dropped = append(m.dropped, u)
			cost += sidefile.Cost(len(u.Data))
		}
		ss.Sidefile().Release(cost)
	}
}

// dropRig opens duplex pairs a and b over a mover whose link is down.
func dropRig(t *testing.T) (*Manager, *subsystem.Subsystem, *dropMover) {
	t.Helper()
	dir := t.TempDir()
	ss, vols := subsystemAB(t, dir, 4<<20, nil)
	mv := &dropMover{subs: []*subsystem.Subsystem{ss}}
	mg, err := Open(Options{Dir: savePairs(t, dir, true, duplexAB(4<<20)...)}, mv, vols)
	if err != nil {
		t.Fatal(err)
	}
	return mg, ss, mv
}

// The Deleted marker of a pair deleted while the link is down, dropped by
// the automatic suspension, must be sent again. If that volume's resync was
// open at the secondary, the secondary would hold every volume for ever (a
// deleted pair is never resumed), its journal growing until the disk fills.
func TestDropKeepsDeleteMarker(t *testing.T) {
	mg, ss, _ := dropRig(t)
	if _, err := mg.Delete("a"); err != nil {
		t.Fatal(err)
	}
	mg.suspendSession(reasonLinkDown, false)
	if err := mg.Resume("b"); err != nil { // link back: b resumes by itself
		t.Fatal(err)
	}
	ups, _, _ := ss.Drain()
	for _, u := range ups {
		if m, err := recordset.DecodeMarker(u); err == nil && u.Kind == recordset.KindMarker && u.Volume == "a" && m.State == recordset.StateDeleted {
			return
		}
	}
	t.Fatalf("the Deleted marker of a was dropped and is never sent again")
}

// The Suspended marker of a pair suspended by hand, dropped with everything
// else by an automatic suspension, must be sent again: otherwise the
// secondary goes on taking that volume as duplex (consistent with the others
// at every later group) although its writes since are only in the primary's
// bitmap.
func TestDropKeepsHandSuspendMarker(t *testing.T) {
	mg, ss, mv := dropRig(t)
	if err := mg.Suspend("a"); err != nil { // by hand: S(a) is captured
		t.Fatal(err)
	}
	// The link stays down with a full sidefile: the session suspends itself.
	mg.suspendSession(reasonLinkDown, false)
	sawDropped := false
	for _, u := range mv.dropped {
		if u.Kind == recordset.KindMarker && u.Volume == "a" {
			sawDropped = true
		}
	}
	if !sawDropped {
		t.Fatalf("expected the hand suspension's marker among the dropped updates")
	}
	// Link back: what will the secondary learn of a? Only what is captured now.
	ups, _, _ := ss.Drain()
	for _, u := range ups {
		if u.Kind == recordset.KindMarker && u.Volume == "a" {
			return
		}
	}
	t.Fatalf("the Suspended marker of a (suspended by hand) was dropped and is never sent again: the secondary keeps a as duplex; after the drop it still reports a consistent with b at every later group")
}

// A primary started before its secondary (or a pair added while the link is
// down) announces a first copy; the automatic suspension drops that marker,
// and the resume on the link's return must announce the first copy again,
// not a resync of a consistent copy: the secondary, which never learnt of
// the first copy, would then hold every volume through the whole initial
// copy of every volume, in its journal, which nothing checks has room.
func TestResumeAfterDropAnnouncesFirstCopy(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	vols := map[string]*volume.Volume{}
	for _, n := range []string{"a"} {
		v, err := volume.Open(filepath.Join(dir, n+".img"), size)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		vols[n] = v
	}
	ss := subsystem.New("s1", timer.New(), sidefile.New(64<<20), vols, []string{"a"})
	mv := &dropMover{subs: []*subsystem.Subsystem{ss}}
	mg, err := Open(Options{Dir: filepath.Join(dir, "pairs")}, mv, []Volume{{Name: "a", Subsystem: ss, Size: size}})
	if err != nil {
		t.Fatal(err)
	}
	mg.suspendSession(reasonLinkDown, false)
	if err := mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	ups, _, _ := ss.Drain()
	for _, u := range ups {
		if u.Kind != recordset.KindMarker {
			continue
		}
		m, _ := recordset.DecodeMarker(u)
		if m.State == recordset.StateFirstCopy || m.State == recordset.StateResync && m.Inconsistent {
			return
		}
		t.Logf("sent after the drop: %+v", m)
	}
	t.Fatalf("after the drop the secondary is told of a resync over a consistent copy, never of the first copy: it holds every volume through the whole initial copy")
}
