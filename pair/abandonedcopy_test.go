package pair

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestACopyGivenUpSuspendsItsPairAndIsCopiedAgain: a copy whose read of
// the primary volume hung is given up by the mover, which cuts without it
// so that the other pairs go on. Its pair is suspended, saying why, and
// stays so until the operator resumes it (the link being up does not);
// the region given up is in its bitmap and stays marked in the activity
// log until a resync has copied it again. The other pairs are untouched.
func TestACopyGivenUpSuspendsItsPairAndIsCopiedAgain(t *testing.T) {
	r := hungCopyOfA(t)
	if !marked(r.pendingRegions("a"), twinRegion) {
		t.Fatal("the copier took the region of a copy given up for copied")
	}
	r.mv.ship()
	r.mg.suspendAbandoned()
	a := r.pair("a")
	if a.State != Suspended || a.Auto || a.Reason != reasonCopyReadHung {
		t.Fatalf("pair a after its copy was given up: %+v, want suspended by the session, not to resume by itself, saying why", a)
	}
	if !marked(r.ss.Tracking("a"), twinRegion) {
		t.Fatal("the region of the copy given up is not in a's bitmap")
	}
	if b := r.pair("b"); b.State != Pending || b.Reason != "" {
		t.Fatalf("pair b: %+v, want its first copy still to run", b)
	}
	r.mg.autoSuspend() // the link is up: the session resumes only its own link-down suspensions
	if a := r.pair("a"); a.State != Suspended {
		t.Fatalf("pair a resumed by itself: %+v", a)
	}
	r.settle()
	if b := r.pair("b"); b.State != Duplex {
		t.Fatalf("pair b: %+v, want duplex", b)
	}
	r.saveAndClean()
	if r.al.Marked() == 0 {
		t.Fatal("the region of the copy given up is not marked in the activity log: a crash would forget it")
	}

	r.ss.mu.Lock()
	r.ss.hangs = nil
	r.ss.mu.Unlock()
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	if a := r.pair("a"); a.Reason != "" {
		t.Fatalf("resumed pair a: %+v, want no reason left", a)
	}
	r.copiesTheRegionGivenUp(t)
}

// TestACopyGivenUpDoesNotHoldTheManager: the read of a copy the mover gave
// up may hang on (a stuck disk); once its pair is suspended, the manager
// goes on without it: the other pairs are copied and become duplex, and
// the state on disk says the pair is suspended.
func TestACopyGivenUpDoesNotHoldTheManager(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.runWithHungRead(t, false, false)
	deadline := time.Now().Add(30 * time.Second)
	for r.pair("b").State != Duplex || savedState(t, r.mg.statePath(), "a") != Suspended {
		if time.Now().After(deadline) {
			t.Fatalf("with a's copy hung after the mover gave it up: a %+v (on disk %s), b %+v: want b duplex and a's suspension saved",
				r.pair("a"), savedState(t, r.mg.statePath(), "a"), r.pair("b"))
		}
		r.mv.ship()
		time.Sleep(10 * time.Millisecond)
	}
	if a := r.pair("a"); a.Reason != reasonCopyReadHung {
		t.Fatalf("pair a: %+v, want suspended for its hung copy", a)
	}
}

// TestACopyTheDropGaveUpDoesNotHoldTheManager: the session's suspension
// drops what the mover holds, and gives up at once a copy still reading
// its data, whose read may hang on (a stuck disk). The manager goes on
// without it: the suspension is saved, and once the link is back the
// pairs resume by themselves, are copied (the region given up again) and
// become duplex, all while that read still hangs.
func TestACopyTheDropGaveUpDoesNotHoldTheManager(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.runWithHungRead(t, true, true)
	r.waitHungRead(t)
	deadline := time.Now().Add(30 * time.Second)
	r.mv.setConnected(false) // down: the session does not resume at once
	if !r.mg.suspendSession(reasonLinkDown, false) {
		t.Fatal("the session's suspension suspended nothing")
	}
	for savedState(t, r.mg.statePath(), "a") != Suspended || savedState(t, r.mg.statePath(), "b") != Suspended {
		if time.Now().After(deadline) {
			t.Fatalf("with a's copy, given up by the Drop, hung: on disk a %s, b %s: want the session's suspension saved",
				savedState(t, r.mg.statePath(), "a"), savedState(t, r.mg.statePath(), "b"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !marked(r.ss.Tracking("a"), twinRegion) {
		t.Fatal("the region of the copy the Drop gave up is not in a's bitmap")
	}
	r.mv.setConnected(true)
	for r.pair("a").State != Duplex || r.pair("b").State != Duplex {
		if time.Now().After(deadline) {
			t.Fatalf("with the link back and a's first copy still hung: a %+v, b %+v: want both resumed and duplex", r.pair("a"), r.pair("b"))
		}
		r.mv.ship()
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAPairSuspendedForAHungCopyKeepsItsRegionThroughACrash: a kill -9
// comes once a copy was given up, its read hung; before the pair's
// suspension is saved or after. The restarted primary copies the region
// given up all the same: still pending on disk, the pair resumes its copy
// with the region among those to copy; suspended on disk, it stays so,
// saying why and not resuming by itself, the region in its bitmap, and the
// operator's resume copies it.
func TestAPairSuspendedForAHungCopyKeepsItsRegionThroughACrash(t *testing.T) {
	for _, saved := range []bool{false, true} {
		t.Run(fmt.Sprint("saved=", saved), func(t *testing.T) {
			r := hungCopyOfA(t)
			r.mv.ship()
			r.mg.suspendAbandoned()
			if saved {
				r.saveAndClean()
			}
			r.crash()
			r.ss.mu.Lock()
			r.ss.hangs = nil
			r.ss.mu.Unlock()
			a := r.pair("a")
			switch {
			case !saved:
				if a.State != Pending && !(a.State == Suspended && a.Auto) {
					t.Fatalf("pair a restarted before its suspension was saved: %+v, want its copy to go on", a)
				}
				if a.State == Suspended {
					r.mg.autoSuspend()
				}
			case a.State != Suspended || a.Auto || a.Reason != reasonCopyReadHung:
				t.Fatalf("pair a restarted suspended for its hung copy: %+v, want suspended for the operator, saying why", a)
			default:
				if !marked(r.ss.Tracking("a"), twinRegion) {
					t.Fatal("the region of the copy given up is not in a's bitmap once restarted")
				}
				if err := r.mg.Resume("a"); err != nil {
					t.Fatal(err)
				}
			}
			r.copiesTheRegionGivenUp(t)
		})
	}
}

// TestAStopDoesNotWaitForACopysHungRead: the primary stops (Run's context
// ends) while a copy's read of the volume hangs, not given up yet. Run
// returns all the same, rather than wait as long as the disk is stuck: the
// stop goes on (the mover's last cut gives the copy up), and the pair,
// still pending, keeps the region to copy once restarted.
func TestAStopDoesNotWaitForACopysHungRead(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	cancel, ran := r.runWithHungRead(t, false, true)
	r.waitHungRead(t)
	cancel()
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("Run, its context ended, still waits for a copy's hung read after 10s")
	}
	if err := r.mg.Close(true); err != nil {
		t.Fatal(err)
	}
	r.crash()
	if a := r.pair("a"); a.State != Pending || !marked(r.pendingRegions("a"), twinRegion) {
		t.Fatalf("pair a restarted: %+v, regions %v: want pending, the region whose read hung to copy", a, r.pendingRegions("a"))
	}
}

// hungCopyOfA returns a rig whose pair a, in its first copy, has had its
// copy of its second region given up by the mover, its read hung: the
// report of it is the mover's next Abandoned.
func hungCopyOfA(t *testing.T) *rig {
	withIdle(t, 0)
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.ss.hangs = func(vol string, off int64) bool { return vol == "a" && off == twinRegion }
	r.mg.copyOne(context.Background())
	return r
}

// runWithHungRead runs r's manager until the test ends. The reads of a's
// copies of its second region hang meanwhile (the first one's only, if
// once), each given up by the mover's cut at once, or by a Drop only if
// untilDrop. It returns the cancel of Run's context, and a channel closed
// once Run returns.
func (r *rig) runWithHungRead(t *testing.T, once, untilDrop bool) (context.CancelFunc, <-chan struct{}) {
	hung := make(chan struct{})
	var first sync.Once
	r.ss.hangs = func(vol string, off int64) bool {
		if vol != "a" || off != twinRegion {
			return false
		}
		hangs := !once
		first.Do(func() { hangs = true })
		return hangs
	}
	r.ss.hung, r.ss.untilDrop = hung, untilDrop
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		r.mg.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		close(hung)
		<-ran
	})
	return cancel, ran
}

// waitHungRead waits, shipping what is captured, until a copy's read hangs
// that no Drop gave up yet (see runWithHungRead).
func (r *rig) waitHungRead(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.ss.mu.Lock()
		n := len(r.ss.reading)
		r.ss.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a's copy never read the region that hangs")
		}
		r.mv.ship()
		time.Sleep(5 * time.Millisecond)
	}
}

// copiesTheRegionGivenUp checks that a's copy, under way, copies the region
// whose read was given up, and that no activity-log region stays marked once
// every pair is duplex.
func (r *rig) copiesTheRegionGivenUp(t *testing.T) {
	t.Helper()
	if !marked(r.pendingRegions("a"), twinRegion) {
		t.Fatalf("pair a: %+v, regions %v: want the region given up to copy", r.pair("a"), r.pendingRegions("a"))
	}
	r.settle()
	r.saveAndClean()
	if n := r.al.Marked(); n != 0 {
		t.Fatalf("%d activity-log regions still marked once the copy of the region given up is done", n)
	}
}

// TestAHandSuspendDoesNotWaitForItsCopysHungRead: the operator suspends a
// pair whose copy's read of the primary volume hangs, before the mover
// has given it up. The copy stops being the manager's at once, as a
// suspension stops any copy: the other pair is copied and becomes duplex
// while the read still hangs, and the region read stays in a's bitmap.
func TestAHandSuspendDoesNotWaitForItsCopysHungRead(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.runWithHungRead(t, false, true)
	r.waitHungRead(t)
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.pair("b").State != Duplex {
		if time.Now().After(deadline) {
			t.Fatalf("a suspended by hand, its copy's read hung: b %+v after 10s, want duplex", r.pair("b"))
		}
		r.mv.ship()
		time.Sleep(10 * time.Millisecond)
	}
	if !marked(r.ss.Tracking("a"), twinRegion) {
		t.Fatal("the region of a's hung copy is not in its bitmap")
	}
}
