package pair

import (
	"context"
	"fmt"
	"testing"
)

// TestFirstCopyClaimsNoConsistencyTime: a pair in its first copy (added
// again after a deletion, or new) has no consistent copy at the secondary:
// the copy lands there in region order, a mix of the old and the new
// content that no moment of the primary held, and the secondary says "not
// consistent: initial copy not complete". The primary must claim no
// consistency time for it either, whatever time the pair kept from its
// deletion: not while pending, nor once suspended or deleted before the copy
// ends, nor after a restart with nothing acknowledged yet.
func TestFirstCopyClaimsNoConsistencyTime(t *testing.T) {
	// deletedAndAdded returns a rig whose pair a was duplex, written,
	// deleted with a consistency time, and added again with part of its
	// first copy journaled by the secondary.
	deletedAndAdded := func(t *testing.T) *rig {
		r := newRig(t, 64*twinRegion, 64<<20, "a", "b")
		r.settle()
		r.write("a", 0, 4096)
		r.journal()
		if _, err := r.mg.Delete("a"); err != nil {
			t.Fatal(err)
		}
		r.journal()
		if p := r.pair("a"); p.Consistent == 0 {
			t.Fatalf("setup: deleted pair %+v reports no consistency time", p)
		}
		if err := r.mg.Add("a"); err != nil {
			t.Fatal(err)
		}
		if p := r.pair("a"); p.State != Pending || !p.FirstCopy || p.Consistent != 0 {
			t.Fatalf("added again, pair a is %+v: want pending in its first copy, consistent as of no time (0), not as of its deletion", p)
		}
		r.copyAndJournal()
		if p := r.pair("a"); p.State != Pending || p.Copied == 0 || p.Consistent != 0 {
			t.Fatalf("part of its first copy journaled, pair a is %+v: want pending, partly copied, consistent as of no time (0): "+
				"the secondary holds a mix of its copy as of the deletion and the first copy's regions", p)
		}
		return r
	}
	t.Run("new, suspended together", func(t *testing.T) {
		// Never copied at all: a suspension at one point of the timer
		// makes no time of it.
		r := newRig(t, 64*twinRegion, 64<<20, "a", "b")
		r.copyAndJournal()
		if _, err := r.mg.SuspendAll(); err != nil {
			t.Fatal(err)
		}
		r.journal()
		for _, p := range r.mg.Pairs() {
			if p.State != Suspended || p.Consistent != 0 {
				t.Errorf("new pair suspended in its first copy: %+v, want suspended, consistent as of no time (0)", p)
			}
		}
	})
	t.Run("pending", func(t *testing.T) {
		deletedAndAdded(t)
	})
	t.Run("suspended", func(t *testing.T) {
		r := deletedAndAdded(t)
		r.suspendA()
		r.wantNoClaim("suspended in its first copy (the secondary holds part of the copy)")
	})
	t.Run("deleted", func(t *testing.T) {
		r := deletedAndAdded(t)
		at, err := r.mg.Delete("a")
		if err != nil {
			t.Fatal(err)
		}
		if at.UnixNano() > 0 {
			t.Errorf("deleted in its first copy, pair a was last consistent as of %d, want never (0)", at.UnixNano())
		}
	})
	t.Run("restarted", func(t *testing.T) {
		r := deletedAndAdded(t)
		r.restartWithNothingAcked()
		r.wantNoClaim("restarted in its first copy with nothing acknowledged yet")
	})
	t.Run("restarted from a state that claims a time", func(t *testing.T) {
		// A state saved before pairs in their first copy claimed none
		// still holds the deletion's time.
		r := deletedAndAdded(t)
		r.mg.mu.Lock()
		r.mg.pairs["a"].Consistent = r.mg.pairs["a"].Since
		r.mg.mu.Unlock()
		if err := r.mg.save(false); err != nil {
			t.Fatal(err)
		}
		claimed := r.pair("a").Since
		r.restartWithNothingAcked()
		r.wantNoClaim(fmt.Sprintf("restarted in its first copy with nothing acknowledged yet, from a state claiming %d", claimed))
	})
	t.Run("copy ends", func(t *testing.T) {
		deletedAndAdded(t).wantEndsConsistentWithB("first copy done")
	})
}

// TestInconsistentResyncClaimsNoConsistencyTime: a resync the operator
// accepted as inconsistent (`pair resume --inconsistent`) does not hold the
// secondary: its regions land there in region order over the copy the
// suspension left, and the secondary reports the volume not consistent
// until the copy ends. The primary must not go on claiming the suspension's
// time for it, during the resync, after a restart in the middle of it, nor
// once it is suspended again before the copy ends.
func TestInconsistentResyncClaimsNoConsistencyTime(t *testing.T) {
	resyncing := func(t *testing.T) *rig {
		r := newRig(t, 64*twinRegion, 64<<20, "a", "b")
		r.settle()
		r.suspendA()
		for i := range int64(32) {
			r.write("a", i*twinRegion, 4096)
		}
		if p := r.pair("a"); p.Consistent == 0 {
			t.Fatalf("setup: suspended pair %+v claims no consistency time", p)
		}
		if err := r.mg.ResumeInconsistent("a"); err != nil {
			t.Fatal(err)
		}
		r.copyAndJournal()
		if p := r.pair("a"); p.State != Pending || p.Copied == 0 || p.Consistent != 0 {
			t.Fatalf("inconsistent resync under way, pair a is %+v: want pending, partly copied, consistent as of no time (0): "+
				"the secondary holds a mix of its copy as of the suspension and the resync's regions", p)
		}
		return r
	}
	t.Run("pending", func(t *testing.T) { resyncing(t) })
	t.Run("restarted", func(t *testing.T) {
		r := resyncing(t)
		r.restartWithNothingAcked()
		r.wantNoClaim("restarted in an inconsistent resync")
	})
	t.Run("suspended again", func(t *testing.T) {
		r := resyncing(t)
		r.suspendA()
		r.wantNoClaim("suspended in an inconsistent resync")
		if err := r.mg.Resume("a"); err != nil {
			t.Fatal(err)
		}
		r.copyAndJournal()
		if p := r.pair("a"); p.State == Pending && p.Consistent != 0 {
			t.Errorf("resumed after an inconsistent resync was cut short, pair a reports consistency time %d while pending, want none (0)", p.Consistent)
		}
	})
	t.Run("copy ends", func(t *testing.T) {
		resyncing(t).wantEndsConsistentWithB("inconsistent resync done")
	})
}

// restartWithNothingAcked crashes the primary and restarts it, its mover
// not linked and with nothing acknowledged yet, and runs one promote.
func (r *rig) restartWithNothingAcked() {
	r.t.Helper()
	r.mv.mu.Lock()
	r.mv.acked, r.mv.connected = 0, false
	r.mv.mu.Unlock()
	r.crash()
	r.mg.promote()
}

// journal has the secondary journal what the mover holds, and the pairs
// take its acknowledgement.
func (r *rig) journal() {
	r.mv.ship()
	r.mg.promote()
}

// copyAndJournal runs a step of the copy, then journal.
func (r *rig) copyAndJournal() {
	r.mg.copyOne(context.Background())
	r.journal()
}

// suspendA suspends pair a, and the secondary journals the suspension.
func (r *rig) suspendA() {
	r.t.Helper()
	if err := r.mg.Suspend("a"); err != nil {
		r.t.Fatal(err)
	}
	r.journal()
}

// wantNoClaim fails the test if pair a, as when says, claims a
// consistency time.
func (r *rig) wantNoClaim(when string) {
	r.t.Helper()
	if p := r.pair("a"); p.Consistent != 0 {
		r.t.Errorf("%s, pair a reports consistency time %d (since %d), want none (0)", when, p.Consistent, p.Since)
	}
}

// wantEndsConsistentWithB runs the copy of pair a to its end and fails the
// test unless a is then duplex and consistent as of b's time.
func (r *rig) wantEndsConsistentWithB(what string) {
	r.t.Helper()
	r.settle()
	if p, b := r.pair("a"), r.pair("b"); p.State != Duplex || p.Consistent == 0 || p.Consistent != b.Consistent {
		r.t.Errorf("%s, pair a is %+v: want duplex, consistent with b as of %d", what, p, b.Consistent)
	}
}
