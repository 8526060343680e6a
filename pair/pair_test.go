package pair

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/consistency"
	"duplex/sidefile"
	"duplex/transport"
)

// withIdle makes the activity log unmark idle regions at once.
func withIdle(t *testing.T, d time.Duration) {
	old := actlog.Idle
	actlog.Idle = d
	t.Cleanup(func() { actlog.Idle = old })
}

// autoSuspendNow runs the suspend watcher's step until the link has been
// down longer than SuspendAfter and every pair is suspended.
func (r *rig) autoSuspendNow() {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mg.autoSuspend()
		all := true
		for _, p := range r.mg.Pairs() {
			if p.State != Suspended {
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("not every pair auto-suspended after 5s: %+v", r.mg.Pairs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestInitialCopyThenDuplex(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	for _, p := range r.mg.Pairs() {
		if p.State != Pending || p.CopyTotal != 4*twinRegion {
			t.Fatalf("new pair: %+v, want pending with a full copy", p)
		}
	}
	r.settle()
	if got, want := len(r.ss.copies), 8; got != want {
		t.Fatalf("copy updates: got %d, want %d", got, want)
	}
}

// Defect 1: an auto-suspend drops the held updates of every pair, including
// one already suspended by hand; each must land in its volume's bitmap.
func TestAutoSuspendMarksDroppedUpdatesOfEveryPair(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b", "c")
	r.settle()
	r.write("a", 0, 4096) // captured while duplex, then held
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.write("b", twinRegion, 4096)
	r.write("c", 2*twinRegion, 4096)
	if _, err := r.mg.Delete("c"); err != nil {
		t.Fatal(err)
	}
	r.mv.setConnected(false)
	r.autoSuspendNow()
	if !marked(r.ss.Tracking("a"), 0) {
		t.Errorf("held write to a (suspended by hand) dropped without a mark in its bitmap")
	}
	if !marked(r.ss.Tracking("b"), twinRegion) {
		t.Errorf("held write to b dropped without a mark in its bitmap")
	}
	// A deleted pair's volume is copied whole when added again; its dropped
	// updates are marked all the same.
	if !marked(r.ss.Tracking("c"), 2*twinRegion) {
		t.Errorf("held write to deleted c dropped without a mark in its bitmap")
	}
	// Nothing is lost across the resume: a is resumed by hand, b by the link.
	r.mv.setConnected(true)
	r.mg.autoSuspend()
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	if !marked(r.pendingRegions("a"), 0) || !marked(r.pendingRegions("b"), twinRegion) {
		t.Fatalf("resync misses dropped regions: a %v b %v", r.pendingRegions("a"), r.pendingRegions("b"))
	}
	r.settle()
}

// Defect 3: a copy blocked on a full sidefile while the link is down must
// not keep the session from suspending itself on time, nor writes waiting.
func TestAutoSuspendWhileCopyWaitsForSidefile(t *testing.T) {
	r := newRig(t, 64*twinRegion, 4*sidefile.Cost(twinRegion), "a")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.mg.Run(ctx)
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()
	// The copier fills the sidefile and waits for space, then a write waits
	// too. The link is up but ships nothing meanwhile, so nothing suspends
	// the session before both wait, however slowly the copier runs.
	deadline := time.Now().Add(30 * time.Second)
	for r.ss.side.Stats().Waiting == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("copier never filled the sidefile: %+v", r.ss.side.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	wrote := make(chan error, 1)
	go func() {
		wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer wcancel()
		wrote <- r.ss.write(wctx, "a", 63*twinRegion, 4096)
	}()
	deadline = time.Now().Add(30 * time.Second)
	for r.ss.side.Stats().Waiting < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the write never waited for sidefile space: %+v", r.ss.side.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	r.mv.setConnected(false)
	r.waitState("a", Suspended, 30*time.Second)
	// The pair reads suspended before the suspension has marked what the
	// mover held (the copies of the regions in the sidefile) in its
	// bitmap, which it does under dropMu: taking dropMu waits for that.
	r.mg.dropMu.Lock()
	r.mg.dropMu.Unlock()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("write during the outage: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("write still waiting 30s after the session suspended")
	}
	bm := r.ss.Tracking("a")
	if got, want := bm.Count(), 64; got != want {
		t.Fatalf("suspended pair's bitmap: %d regions marked, want %d (the copy was not done)", got, want)
	}
	// The link returns: the pair resumes by itself and completes its copy.
	wg.Add(1)
	shipping, stopShip := context.WithCancel(context.Background())
	defer stopShip()
	go func() {
		defer wg.Done()
		for shipping.Err() == nil {
			r.mv.ship()
			time.Sleep(time.Millisecond)
		}
	}()
	r.mv.setConnected(true)
	r.waitState("a", Duplex, 60*time.Second)
	stopShip()
}

// Defect 5: a pair suspended by hand while its copy runs must keep every mark
// a later write sets, whatever the copier does with the region it just read.
func TestCopyProgressKeepsMarksOfLaterWrites(t *testing.T) {
	for _, tc := range []struct {
		name  string
		holes bool
	}{{"copy", false}, {"hole", true}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 4*twinRegion, 1<<20, "a")
			r.ss.holes = tc.holes
			var once sync.Once
			written := make(chan struct{})
			r.ss.captured = func(vol string, off, length int64) {
				once.Do(func() {
					defer close(written)
					// The copy has read the region; now the pair is
					// suspended and the region written again.
					if err := r.mg.Suspend("a"); err != nil {
						t.Error(err)
					}
					r.write("a", off, 512)
				})
			}
			r.mg.copyOne(context.Background())
			// The suspension ends copyOne's wait for the copy, which
			// may still be writing.
			<-written
			if p := r.pair("a"); p.State != Suspended {
				t.Fatalf("state %s, want suspended", p.State)
			}
			if !marked(r.ss.Tracking("a"), 0) {
				t.Fatalf("write after suspend lost: region 0 not in the bitmap after the copy progressed")
			}
		})
	}
}

// Defect 6: the regions written while a pair was suspended must survive a
// crash at any point of its resume: before the pending state is saved, and
// after the resync completed but before the duplex state is saved.
func TestResumeKeepsSuspendedWritesAcrossCrash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		settle bool
	}{{"pending not saved", false}, {"duplex not saved", true}} {
		t.Run(tc.name, func(t *testing.T) {
			withIdle(t, 0)
			r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
			r.settle()
			r.saveAndClean()
			if err := r.mg.Suspend("a"); err != nil {
				t.Fatal(err)
			}
			if err := r.mg.save(false); err != nil { // as Run does after an operation
				t.Fatal(err)
			}
			r.write("a", 2*twinRegion, 4096) // while suspended: bitmap and sticky mark
			if err := r.mg.Resume("a"); err != nil {
				t.Fatal(err)
			}
			r.write("b", 0, 4096)
			if tc.settle {
				r.settle()
			}
			// The next log write, before the pair state is saved.
			if err := r.al.Clean(); err != nil {
				t.Fatal(err)
			}
			r.crash()
			if !marked(r.pendingRegions("a"), 2*twinRegion) {
				t.Fatalf("after a crash during resume, a is %s and its resync misses the region written while suspended",
					r.pair("a").State)
			}
		})
	}
}

// Defect 7: a resume with nothing to copy completes.
func TestResumeWithEmptyBitmapBecomesDuplex(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a")
	r.settle()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	// The same after an auto-suspend of an idle volume.
	r.mv.setConnected(false)
	r.autoSuspendNow()
	r.mv.setConnected(true)
	r.mg.autoSuspend()
	r.settle()
	// And for a pending pair with nothing left to copy when it was stopped.
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	if err := r.mg.Close(true); err != nil {
		t.Fatal(err)
	}
	if err := r.al.Close(); err != nil {
		t.Fatal(err)
	}
	r.openLog()
	r.open()
	if p := r.pair("a"); p.State != Pending {
		t.Fatalf("after a clean restart a is %s, want pending", p.State)
	}
	r.settle()
}

// Defect 12: updates dropped by an auto-suspend must not stay counted in the
// activity log for ever (their regions would never be unmarked).
func TestDroppedUpdatesLeaveNoActivityLogCount(t *testing.T) {
	withIdle(t, 0)
	r := newRig(t, 4*twinRegion, 1<<20, "a")
	r.settle()
	if err := r.al.Clean(); err != nil {
		t.Fatal(err)
	}
	r.write("a", 0, 4096)
	r.mv.setConnected(false)
	r.autoSuspendNow()
	if n := r.al.Marked(); n == 0 {
		t.Fatalf("dropped write's region unmarked while the pair is suspended")
	}
	r.mv.setConnected(true)
	r.mg.autoSuspend()
	r.settle()
	r.saveAndClean() // as Run does once a pair is duplex
	if n := r.al.Marked(); n != 0 {
		t.Fatalf("%d activity-log regions still marked after the resync completed and everything was acknowledged", n)
	}
}

// An operation's answer means it is durable: a crash right after Suspend,
// Resume, Delete or Add returns (before the manager's periodic save) finds
// the operation done, with the regions it must copy.
func TestPairOperationsDurableWhenAcknowledged(t *testing.T) {
	withIdle(t, 0)
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.settle()
	if err := r.mg.save(false); err != nil { // as Run does once the pairs are duplex
		t.Fatal(err)
	}
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.crash()
	if p := r.pair("a"); p.State != Suspended {
		t.Fatalf("suspend acknowledged, then a crash: a is %s, want suspended", p.State)
	}

	r.write("a", 2*twinRegion, 4096) // while suspended
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.crash()
	if p := r.pair("a"); p.State == Suspended {
		t.Fatalf("resume acknowledged, then a crash: a is suspended again")
	}
	if !marked(r.pendingRegions("a"), 2*twinRegion) {
		t.Fatalf("resume acknowledged, then a crash: a is %s and its resync misses the region written while suspended", r.pair("a").State)
	}
	r.settle()
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}

	if _, err := r.mg.Delete("b"); err != nil {
		t.Fatal(err)
	}
	r.crash()
	if p := r.pair("b"); !p.Deleted {
		t.Fatalf("delete acknowledged, then a crash: b is a pair again (%s)", p.State)
	}

	if err := r.mg.Add("b"); err != nil {
		t.Fatal(err)
	}
	r.crash()
	if p := r.pair("b"); p.Deleted || p.State != Pending {
		t.Fatalf("add acknowledged, then a crash: b is %s (deleted %v), want pending with an initial copy", p.State, p.Deleted)
	}
	r.settle()
}

// A record set the secondary refuses because an update is stamped at or
// before its consistency time (a primary whose clock went back) would be
// refused again on every resend: the session drops what is held into the
// bitmaps, suspends its pairs by itself, and resyncs them once the link is
// back, saying why in the pair state. The refusal is known by the kind the
// secondary named (as the mover read it), whatever its words.
func TestStaleRefusalSuspendsThenResyncs(t *testing.T) {
	withIdle(t, 0)
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b", "c")
	r.settle()
	if err := r.mg.Suspend("c"); err != nil {
		t.Fatal(err)
	}
	r.write("a", 0, 4096)
	r.write("b", 3*twinRegion, 4096)
	r.mv.refuse(transport.Refusal{Reason: "refusing a record set: " + consistency.ErrStale.Error(), Passing: true, Kind: transport.RefusalStale})
	r.mg.autoSuspend()
	for _, v := range []string{"a", "b"} {
		p := r.pair(v)
		if p.State != Suspended || !p.Auto || !strings.Contains(p.Reason, "consistency time") {
			t.Fatalf("after a stale refusal %s is %s (auto %v, reason %q), want suspended by the session with the reason", v, p.State, p.Auto, p.Reason)
		}
	}
	if p := r.pair("c"); p.State != Suspended || p.Auto {
		t.Fatalf("c, suspended by hand, is %s (auto %v) after the stale refusal", p.State, p.Auto)
	}
	if st := r.ss.side.Stats(); st.Used != 0 {
		t.Fatalf("the refused updates are still held (%d bytes): they would be sent again for ever", st.Used)
	}
	if !marked(r.ss.Tracking("a"), 0) || !marked(r.ss.Tracking("b"), 3*twinRegion) {
		t.Fatal("a dropped update is not in its pair's bitmap")
	}
	// Each refusal is handled once: a later loss of the link alone does not
	// suspend again.
	r.mg.autoSuspend()
	r.mv.setConnected(true)
	r.mg.autoSuspend()
	for _, v := range []string{"a", "b"} {
		if p := r.pair(v); p.State != Pending || p.Reason != "" {
			t.Fatalf("link back: %s is %s (reason %q), want pending (resync)", v, p.State, p.Reason)
		}
	}
	if !marked(r.pendingRegions("a"), 0) || !marked(r.pendingRegions("b"), 3*twinRegion) {
		t.Fatal("the resync misses a dropped region")
	}
	r.mv.setConnected(false)
	r.mg.autoSuspend()
	if p := r.pair("a"); p.State != Pending {
		t.Fatalf("a plain link loss after a handled refusal: a is %s, want still pending", p.State)
	}
	r.mv.setConnected(true)
	r.settle()
	if p := r.pair("c"); p.State != Suspended {
		t.Fatalf("c, suspended by hand, is %s after the link came back", p.State)
	}
}

// A refusal the secondary did not name stale suspends nothing, whatever
// its words: one that quotes a stale record set's (a reason naming a path
// or an error that says them) is not one, and a suspension would have
// every pair resynced for nothing.
func TestAnUnnamedRefusalInStaleWordsSuspendsNothing(t *testing.T) {
	withIdle(t, 0)
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.settle()
	r.write("a", 0, 4096)
	r.mv.refuse(transport.Refusal{Reason: "refusing a record set the secondary cannot apply: " + consistency.ErrStale.Error()})
	r.mg.autoSuspend()
	for _, v := range []string{"a", "b"} {
		if p := r.pair(v); p.State == Suspended {
			t.Fatalf("after an unnamed refusal %s is suspended (auto %v, reason %q): the words are not the kind", v, p.Auto, p.Reason)
		}
	}
}

// A pair the session suspended itself, then suspended by hand, is the
// operator's: the link's return must not resume it, even when the hand
// suspend comes while the session is about to resume its pairs.
func TestHandSuspendOfAutoSuspendedPairIsNotResumed(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a")
	r.settle()
	r.mv.setConnected(false)
	r.autoSuspendNow()
	r.mv.setConnected(true)
	// The hand suspend lands between the session's look at its pairs and
	// its resume of them.
	resumeHook = func(vol string) {
		if err := r.mg.Suspend(vol); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { resumeHook = nil })
	r.mg.autoSuspend()
	if p := r.pair("a"); p.State != Suspended || p.Auto {
		t.Fatalf("a, suspended by hand, is %s (auto %v) after the link came back", p.State, p.Auto)
	}
}

// An operator's resume while the link is down past suspend_after is answered,
// and the session suspends the pair again itself (its resync fills the
// sidefile at once); a `suspend --all` then makes that suspension the
// operator's. Its answer must name the pair: otherwise the operator (and a
// script following the answers) takes the pair for resumed, and finds it
// suspended by hand, never resuming by itself.
func TestSuspendAllNamesPairsTheSessionHadSuspended(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.settle()
	if err := r.mg.Suspend("b"); err != nil {
		t.Fatal(err)
	}
	r.mv.setConnected(false)
	r.autoSuspendNow()
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.autoSuspendNow()
	if p := r.pair("a"); p.State != Suspended || !p.Auto {
		t.Fatalf("a is %s (auto %v) with the link down past suspend_after, want suspended by the session", p.State, p.Auto)
	}
	names, err := r.mg.SuspendAll()
	if err != nil {
		t.Fatal(err)
	}
	if p := r.pair("a"); p.State != Suspended || p.Auto {
		t.Fatalf("a is %s (auto %v) after suspend --all, want suspended by hand", p.State, p.Auto)
	}
	if got, want := strings.Join(names, ","), "a"; got != want {
		t.Fatalf("suspend --all answered %q, want %q: it made a's suspension the operator's (b was the operator's already)", got, want)
	}
}
