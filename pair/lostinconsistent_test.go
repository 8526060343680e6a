package pair

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"duplex/apply"
	"duplex/bitmap"
	"duplex/consistency"
	"duplex/mover"
	"duplex/recordset"
	"duplex/secondary"
	"duplex/subsystem"
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

const lostRegions = 64

// lostRig is a manager of pairs a and b over a real subsystem (which sends
// pair-state markers), opened from the pairs given, as pairs.json of a run
// that stopped cleanly or not.
type lostRig struct {
	ss *subsystem.Subsystem
	mv *freeLinkMover
	mg *Manager
}

func newLostRig(t *testing.T, clean bool, pairs ...*Pair) *lostRig {
	t.Helper()
	dir := t.TempDir()
	const size = lostRegions * bitmap.DefaultRegion
	ss, vols := subsystemAB(t, dir, size, nil)
	for _, p := range pairs {
		p.Subsystem, p.Size = "s1", size
	}
	state := savePairs(t, dir, clean, pairs...)
	if p := pairs[0]; p.State == Suspended {
		// Its bitmap: every region written while suspended.
		bm := bitmap.New(size, bitmap.DefaultRegion)
		bm.SetAll()
		data, _ := bm.MarshalBinary()
		os.WriteFile(filepath.Join(state, p.Volume+".bitmap"), data, 0o644)
	}
	// With an activity log, an unclean stop copies only what it names: b,
	// duplex, is not resynced.
	al, rec := activityLogAB(t, dir, size, ss)
	mv := &freeLinkMover{linkMover: linkMover{subs: []*subsystem.Subsystem{ss}}, free: 1 << 50}
	mv.connected.Store(true)
	mg, err := Open(Options{Dir: state, Logger: slog.New(slog.DiscardHandler), ActivityLog: al, Recovered: rec}, mv, vols)
	if err != nil {
		t.Fatal(err)
	}
	return &lostRig{ss: ss, mv: mv, mg: mg}
}

// loseInconsistentResync suspends a (the secondary has the suspension),
// writes every region of it, resumes it accepting an inconsistent resync,
// and then has the session suspend itself with the link down, dropping what
// it held: the inconsistent resync's marker goes with it, and the secondary
// still holds a's copy as of its suspension.
func (r *lostRig) loseInconsistentResync(t *testing.T) {
	t.Helper()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.ss.Drain() // the secondary has a's suspension
	for i := range int64(lostRegions) {
		if err := r.ss.Write(context.Background(), "a", make([]byte, 4096), i*bitmap.DefaultRegion); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.mg.ResumeInconsistent("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.connected.Store(false)
	if !r.mg.suspendSession(reasonLinkDown, false) {
		t.Fatal("setup: the session did not suspend")
	}
	r.ss.Drain() // the suspensions announced again: the secondary has them
	if p := r.mg.Pairs()[0]; p.State != Suspended || !p.Inconsistent {
		t.Fatalf("setup: pair a %+v, want it suspended and taken as inconsistent", p)
	}
	r.mv.connected.Store(true)
}

// shortJournal makes the secondary's journal too short for a resync of
// a's changed regions that holds the other volumes.
func (r *lostRig) shortJournal() (need int64) {
	r.mg.mu.Lock()
	defer r.mg.mu.Unlock()
	bm := r.ss.Tracking("a")
	need = r.mg.roomFor(bm.DirtyBytes(), bm.Count())
	r.mv.free = uint64(need) / 4
	return need
}

// secondarySees checks what the secondary makes of what was captured since
// it held a suspended (consistent as of time 1) and b duplex, followed by a
// write to b: a's resync marker must say inconsistent, and the secondary
// must not hold the volumes for it (it recovers to the last group, the
// write to b included).
func (r *lostRig) secondarySees(t *testing.T, what string) {
	t.Helper()
	if err := r.ss.Write(context.Background(), "b", []byte{'B'}, 0); err != nil {
		t.Fatal(err)
	}
	ups, _, _ := r.ss.Drain()
	st := apply.State{Group: 1, Time: 1, Volumes: map[string]apply.VolumeState{
		"a": {State: secondary.StateSuspended, Since: 1}, "b": {State: secondary.StateDuplex}}}
	var groups []*consistency.Group
	resyncs := 0
	for i, u := range ups {
		if u.Volume == "a" && u.Kind == recordset.KindMarker {
			m, err := recordset.DecodeMarker(u)
			if err != nil {
				t.Fatal(err)
			}
			if m.State == recordset.StateResync {
				resyncs++
				if !m.Inconsistent {
					t.Errorf("%s: a's resync is announced as a plain resync (the secondary holds the other volumes for it), "+
						"though the operator accepted it as inconsistent and the primary reports a inconsistent", what)
				}
			}
		}
		groups = append(groups, &consistency.Group{Number: uint64(2 + i), Time: u.Timestamp, Updates: []recordset.Update{u}})
	}
	if resyncs == 0 {
		t.Fatalf("%s: no resync of a announced (captured: %d updates)", what, len(ups))
	}
	last := groups[len(groups)-1]
	if g, _ := secondary.RecoversTo(st, groups); g != last.Number {
		t.Errorf("%s: the secondary recovers to group %d, not to the last one (%d, the write to b): it holds the volumes for a's resync, "+
			"which the operator accepted as inconsistent", what, g, last.Number)
	}
}

// TestResumeAfterALostInconsistentResyncStaysInconsistent: an operator's
// resume --inconsistent whose resync marker never reached the secondary
// (the session suspended itself with the link down, dropping what it
// held, that marker with it) leaves the pair suspended, reported
// inconsistent by the primary. The operator's choice stands until the
// resync it accepted ends: a later plain resume of the pair resumes that
// resync, announced inconsistent as asked (status has said so since), so
// the secondary holds nothing for it and it needs no journal room. Were it
// announced plain, the secondary would hold the other volumes for a copy
// the primary already reports inconsistent, and a short journal would
// refuse the resume the operator had made not to need room.
func TestResumeAfterALostInconsistentResyncStaysInconsistent(t *testing.T) {
	r := newLostRig(t, true, &Pair{Volume: "a", State: Duplex}, &Pair{Volume: "b", State: Duplex})
	r.loseInconsistentResync(t)
	need := r.shortJournal()
	if err := r.mg.Resume("a"); err != nil {
		t.Fatalf("resume of pair a, whose accepted inconsistent resync lost its marker, with about %d bytes of journal needed for a held resync "+
			"and %d free: %v, want it resumed as the inconsistent resync it is", need, r.mv.free, err)
	}
	if p := r.mg.Pairs()[0]; p.State != Pending || !p.Inconsistent {
		t.Fatalf("pair a %+v, want it pending and inconsistent", p)
	}
	r.secondarySees(t, "plain resume after the lost marker")
}

// TestSessionResumeKeepsALostInconsistentResyncInconsistent: as above, the
// marker of an accepted inconsistent resync dropped by the session's own
// suspension; when the link returns, the session resumes the pairs it
// suspended. Its resume announced a plain resync: the secondary held the
// other volumes for a copy the primary reports inconsistent, and with a
// journal short of a held resync's room every pair stayed suspended,
// retrying for ever.
func TestSessionResumeKeepsALostInconsistentResyncInconsistent(t *testing.T) {
	r := newLostRig(t, true, &Pair{Volume: "a", State: Duplex}, &Pair{Volume: "b", State: Duplex})
	r.loseInconsistentResync(t)
	need := r.shortJournal()
	r.mg.autoSuspend()
	for _, p := range r.mg.Pairs() {
		if p.State == Suspended {
			t.Fatalf("pair %+v not resumed by the session with the link back (about %d bytes of journal needed for a held resync of a, %d free): "+
				"a's resync is the inconsistent one the operator accepted, which needs no room", p, need, r.mv.free)
		}
	}
	if p := r.mg.Pairs()[0]; !p.Inconsistent {
		t.Fatalf("pair a %+v, want it inconsistent", p)
	}
	r.secondarySees(t, "the session's resume after the lost marker")
}

// TestRestartKeepsAnInconsistentResyncInconsistent: the primary is killed
// with an accepted inconsistent resync of a pending (its marker not yet
// acknowledged, so it dies in the sidefile), or with the pair suspended
// after such a resync began. pairs.json says the pair is inconsistent; the
// copy Open announces again, or the resume after it, must be that
// inconsistent resync, not a plain one the secondary holds the other
// volumes for, with no journal room checked.
func TestRestartKeepsAnInconsistentResyncInconsistent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		clean bool
		state State
	}{
		{"pending, killed", false, Pending},
		{"pending, stopped", true, Pending},
		{"suspended, killed", false, Suspended},
		{"suspended, stopped", true, Suspended},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Pair{Volume: "a", State: tc.state, Inconsistent: true, CopyTotal: lostRegions * bitmap.DefaultRegion}
			r := newLostRig(t, tc.clean, a, &Pair{Volume: "b", State: Duplex})
			if r.mg.Pairs()[0].State == Suspended {
				r.shortJournal()
				if err := r.mg.Resume("a"); err != nil {
					t.Fatalf("resume of pair a, inconsistent after the restart, with a short journal: %v", err)
				}
			}
			r.secondarySees(t, "after the restart")
		})
	}
}
