package pair

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"

	"duplex/apply"
	"duplex/consistency"
	"duplex/mover"
	"duplex/recordset"
	"duplex/secondary"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/transport"
)

// linkMover is a mover whose link the test takes down and brings back;
// Drop drains the subsystems as mover.Drop does.
type linkMover struct {
	noneAbandoned
	subs      []*subsystem.Subsystem
	connected atomic.Bool
}

func (m *linkMover) Stats() mover.Stats {
	return mover.Stats{Connected: m.connected.Load(), Acked: transport.Position{Group: 1, Time: 1}}
}

func (m *linkMover) Drop(mark func(recordset.Update)) {
	for _, ss := range m.subs {
		ups, _, _ := ss.Drain()
		var cost int64
		for _, u := range ups {
			mark(u)
			cost += sidefile.Cost(len(u.Data))
		}
		ss.Sidefile().Release(cost)
	}
}

// TestSessionResumesWhatItSuspendedTogetherAtOnePoint: the session
// suspends every pair at one point of the common timer (link down with a
// full sidefile), so that the secondary holds them all as of one moment.
// When the link returns it resumes them one after another. Pair a, with
// nothing written while suspended, resumes first: its resync marker carries
// no bytes, and the secondary takes a as duplex again at once, holding
// nothing. A client then writes B to b (still suspended: bitmap only),
// and once that is acknowledged writes A to a, which is captured and
// shipped. Pair b resumes after that, and its resync holds the secondary
// from its marker on, at the last group before it: the one with A. The
// secondary then holds A and not B, which was acknowledged before A was
// issued, for as long as b's resync runs, and recover leaves it so. Resumed
// at one point (ResumeTogether, as resume --all does), the marker of b
// would come before A and hold it.
func TestSessionResumesWhatItSuspendedTogetherAtOnePoint(t *testing.T) {
	dir := t.TempDir()
	ss, vols := subsystemAB(t, dir, 4<<20, nil)
	mv := &linkMover{subs: []*subsystem.Subsystem{ss}}
	mv.connected.Store(true)
	mg, err := Open(Options{Dir: savePairs(t, dir, true, duplexAB(4<<20)...), Logger: slog.New(slog.DiscardHandler)}, mv, vols)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// The session suspends both pairs together, dropping what was held.
	mv.connected.Store(false)
	if !mg.suspendSession(reasonLinkDown, false) {
		t.Fatal("setup: the session did not suspend")
	}
	ss.Drain() // the reannounced suspensions: the secondary has them
	for _, p := range mg.Pairs() {
		if p.State != Suspended || !p.Auto {
			t.Fatalf("setup: pair %+v, want it suspended by the session", p)
		}
	}
	// b is written while suspended; a is not.
	if err := ss.Write(ctx, "b", make([]byte, 4096), 1<<20); err != nil {
		t.Fatal(err)
	}

	// The link returns; between the session's resume of a and of b, the
	// client writes B to b, then A to a.
	var wrote bool
	old := resumeHook
	resumeHook = func(vol string) {
		if vol != "b" || wrote {
			return
		}
		wrote = true
		if err := ss.Write(ctx, "b", []byte{'B'}, 0); err != nil {
			t.Error(err)
		}
		if err := ss.Write(ctx, "a", []byte{'A'}, 0); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { resumeHook = old })
	mv.connected.Store(true)
	mg.autoSuspend()
	for _, p := range mg.Pairs() {
		if p.State == Suspended {
			t.Fatalf("setup: pair %+v not resumed by the session", p)
		}
	}

	// What the secondary receives, each update a group of its own (the
	// mover may cut between any two), from where it held both pairs.
	ups, _, _ := ss.Drain()
	var tsA int64
	st := apply.State{Group: 1, Time: 1, Volumes: map[string]apply.VolumeState{
		"a": {State: secondary.StateSuspended, Since: 1}, "b": {State: secondary.StateSuspended, Since: 1}}}
	var groups []*consistency.Group
	for i, u := range ups {
		if u.Volume == "a" && u.Kind == recordset.KindWrite {
			tsA = u.Timestamp
		}
		groups = append(groups, &consistency.Group{Number: uint64(2 + i), Time: u.Timestamp, Updates: []recordset.Update{u}})
	}
	if tsA == 0 {
		// A was not captured before b resumed: the pairs resumed at one
		// point, and A ships after b's resync began to hold.
		return
	}
	g, at := secondary.RecoversTo(st, groups)
	if at >= tsA {
		t.Fatalf("during b's resync the secondary recovers to group %d at %d, which holds the write A to a (stamped %d) but not the write B to b "+
			"acknowledged before A was issued (in b's bitmap until its resync copies it): the session resumed the pairs it had suspended together "+
			"one after another, so a resumed (and, with nothing to copy, was applied again) before b's resync began to hold the secondary",
			g, at, tsA)
	}
}
