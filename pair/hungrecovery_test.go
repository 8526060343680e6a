package pair

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// TestARecoveryCopyWhoseReadHangsDoesNotHoldTheStart: after a crash, the
// primary copies the regions its activity log recovered before it serves
// any I/O. A read of one volume for those copies hangs (a stuck disk): the
// start waits for it only as long as the data mover would, and the primary
// then starts without it. That pair is suspended, saying why, not to resume
// by itself, with every region it recovered in its bitmap and still marked
// in the activity log (nothing acknowledged is forgotten, through another
// crash too); the other pair is recovered and stays duplex. Once the volume
// reads again, a resume copies the regions.
func TestARecoveryCopyWhoseReadHangsDoesNotHoldTheStart(t *testing.T) {
	r := writtenSinceClean(t)
	r.hangReadsOfA(t)
	r.crashed()
	if !r.recovers("a", twinRegion) || !r.recovers("b", twinRegion) {
		t.Fatalf("the written regions are not recovered: %v", r.opts.Recovered)
	}
	r.opensWithin(t, "a recovery copy's hung read")
	r.mg.suspendAbandoned() // the mover's first cut gives the copy up
	r.suspendedWithItsRegions(t)
	r.recoversBAndKeepsAsRegions(t, func() {
		r.ss.mu.Lock()
		r.ss.hangs = nil
		r.ss.mu.Unlock()
	})
}

// TestARecoveryCopyStuckBeforeItsCaptureDoesNotHoldTheStart: after a
// crash, a recovery copy of a hangs before it is captured, the stuck disk
// not answering its look for a hole (SEEK_DATA reads the file's extents,
// which a restarted machine does not have in memory). The start waits for
// it as long as for a read that hangs once captured, no longer: a is
// suspended with its recovered regions to copy again, and b recovers.
func TestARecoveryCopyStuckBeforeItsCaptureDoesNotHoldTheStart(t *testing.T) {
	r := writtenSinceClean(t)
	r.ss.mu.Lock()
	r.ss.capturing = func(vol string, _ int64) {
		if vol == "a" {
			select {} // a disk that never answers
		}
	}
	r.ss.mu.Unlock()
	r.opts.CopyReadWait = 50 * time.Millisecond
	r.crashed()
	r.opensWithin(t, "a recovery copy stuck before its capture")
	r.suspendedWithItsRegions(t)
	r.mv.ship()
	r.mg.promote()
	if b := r.pair("b"); b.State != Duplex {
		t.Fatalf("pair b: %+v, want recovered and duplex", b)
	}
}

// opensWithin is the manager's Open once crashed, which must return within
// 10s, not wait for what the start's copies wait for.
func (r *rig) opensWithin(t *testing.T, waitsFor string) {
	t.Helper()
	opened := make(chan *Manager, 1)
	go func() {
		mg, err := Open(r.opts, r.mv, r.vols)
		if err != nil {
			t.Error(err)
		}
		opened <- mg
	}()
	select {
	case r.mg = <-opened:
		if r.mg == nil {
			t.FailNow()
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the primary's start still waits for %s after 10s", waitsFor)
	}
}

// suspendedWithItsRegions holds that a, whose recovery copy at the start
// did not complete in time, is suspended saying why, not to resume by
// itself, with its recovered regions (writtenSinceClean) in its bitmap.
func (r *rig) suspendedWithItsRegions(t *testing.T) {
	t.Helper()
	a := r.pair("a")
	if a.State != Suspended || a.Auto || a.Reason != reasonCopyReadHung {
		t.Fatalf("pair a, its recovery copy hung: %+v, want suspended, not to resume by itself, saying why", a)
	}
	for _, off := range []int64{twinRegion, 3 * twinRegion} {
		if !marked(r.ss.Tracking("a"), off) {
			t.Fatalf("the recovered region at %d of a is not in its bitmap", off)
		}
	}
}

// writtenSinceClean is a rig of pairs a and b, duplex, written since the
// activity log was last cleaned: a at twinRegion and 3*twinRegion, b at
// twinRegion. A crash now has those regions recovered.
func writtenSinceClean(t *testing.T) *rig {
	r := newRig(t, 4*twinRegion, 8<<20, "a", "b")
	r.settle()
	r.saveAndClean()
	r.write("a", twinRegion, 4096)
	r.write("a", 3*twinRegion, 4096)
	r.write("b", twinRegion, 4096)
	return r
}

// recoversBAndKeepsAsRegions is the end of a start whose recovery copy of
// a failed (its reads hung or gave an error), a suspended: b is recovered
// and duplex, a's suspension is saved, and another crash once fixed has
// the volume read again keeps a suspended with both recovered regions, at
// twinRegion and 3*twinRegion, which a resume copies.
func (r *rig) recoversBAndKeepsAsRegions(t *testing.T, fixed func()) {
	t.Helper()
	r.mv.ship()
	r.mg.promote()
	if b := r.pair("b"); b.State != Duplex {
		t.Fatalf("pair b: %+v, want recovered and duplex", b)
	}
	r.saveAndClean()
	if got := savedState(t, r.mg.statePath(), "a"); got != Suspended {
		t.Fatalf("pair a on disk: %s, want suspended", got)
	}

	// Another crash, the volume reading again: the regions are still to copy.
	fixed()
	r.crash()
	if a := r.pair("a"); a.State != Suspended || !marked(r.ss.Tracking("a"), twinRegion) || !marked(r.ss.Tracking("a"), 3*twinRegion) {
		t.Fatalf("pair a after another crash: %+v, bitmap %v: want suspended with the recovered regions", a, r.ss.Tracking("a"))
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.copiesTheRegionGivenUp(t)
}

// TestAResumeBeforeTheRecoveryCopyIsGivenUpStands: the pair whose recovery
// copy hung is suspended at the start, before the data mover's first cut
// gives that copy up. The operator resumes it meanwhile, the volume
// reading again: the report of the copy given up, which comes after, is
// of a copy from before the suspension, whose region the resume copies
// already, and does not suspend the pair again.
func TestAResumeBeforeTheRecoveryCopyIsGivenUpStands(t *testing.T) {
	r := newRig(t, 4*twinRegion, 8<<20, "a", "b")
	r.settle()
	r.saveAndClean()
	r.write("a", twinRegion, 4096)
	r.hangReadsOfA(t)
	r.crash()
	if a := r.pair("a"); a.State != Suspended || a.Reason != reasonCopyReadHung {
		t.Fatalf("pair a, its recovery copy hung: %+v, want suspended saying why", a)
	}
	r.ss.mu.Lock()
	r.ss.hangs = nil
	r.ss.mu.Unlock()
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.mg.suspendAbandoned() // the mover's first cut gives the recovery's copy up
	if a := r.pair("a"); a.State != Pending || a.Reason != "" {
		t.Fatalf("pair a resumed, then its recovery copy reported given up: %+v, want its resync under way", a)
	}
	r.copiesTheRegionGivenUp(t)
}

// hangReadsOfA has every copy read of a hang until the test ends, each
// given up by the mover at once, and the start wait 50ms for a recovery
// copy.
func (r *rig) hangReadsOfA(t *testing.T) { r.hangReadsOf(t, "a") }

// hangReadsOf is hangReadsOfA for every volume of vols; the volume of each
// read as it hangs comes on the channel returned (the first 64).
func (r *rig) hangReadsOf(t *testing.T, vols ...string) <-chan string {
	hung := make(chan struct{})
	t.Cleanup(func() { close(hung) })
	reads := make(chan string, 64)
	r.ss.mu.Lock()
	r.ss.hangs = func(vol string, off int64) bool {
		if !slices.Contains(vols, vol) {
			return false
		}
		select {
		case reads <- vol:
		default:
		}
		return true
	}
	r.ss.hung = hung
	r.ss.mu.Unlock()
	r.opts.CopyReadWait = 50 * time.Millisecond
	return reads
}

// TestTheStartWaitsForHungRecoveryReadsTogether: after a crash, the
// recovery copies' reads of two volumes hang. The start waits for each at
// most CopyReadWait, and for both at once: one after the other, N stuck
// volumes would hold every volume's I/O for N waits. No wait ends until
// both reads hang.
func TestTheStartWaitsForHungRecoveryReadsTogether(t *testing.T) {
	r := newRig(t, 4*twinRegion, 8<<20, "a", "b", "c")
	r.settle()
	r.saveAndClean()
	r.write("a", twinRegion, 4096)
	r.write("b", 2*twinRegion, 4096)
	r.write("c", twinRegion, 4096)
	hung := r.hangReadsOf(t, "a", "b")
	ends := make(chan time.Time)
	var endOnce sync.Once
	end := func() { endOnce.Do(func() { close(ends) }) }
	t.Cleanup(end)
	r.opts.copyReadTimer = func(vol string, _ time.Duration) <-chan time.Time {
		if vol == "c" {
			// c's read does not hang: ended with the others', its wait
			// could run out before its copy returned.
			return nil
		}
		return ends
	}
	r.crashed()
	opened, done := make(chan *Manager, 1), make(chan struct{})
	go func() {
		defer close(done)
		mg, err := Open(r.opts, r.mv, r.vols)
		if err != nil {
			t.Error(err)
		}
		opened <- mg
	}()
	t.Cleanup(func() { end(); <-done })
	waits := 0
	for deadline := time.After(10 * time.Second); waits < 2; {
		select {
		case <-hung:
			waits++
		case <-deadline:
			t.Fatalf("after 10s the start waits for %d hung recovery read(s) at once, want 2: each waits for the one before", waits)
		}
	}
	end()
	select {
	case r.mg = <-opened:
		if r.mg == nil {
			t.FailNow()
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the primary's start still waits after its waits for the hung reads ended")
	}
	r.mg.suspendAbandoned()
	for _, vol := range []string{"a", "b"} {
		if p := r.pair(vol); p.State != Suspended || p.Auto || p.Reason != reasonCopyReadHung {
			t.Fatalf("pair %s, its recovery copy hung: %+v, want suspended, not to resume by itself, saying why", vol, p)
		}
	}
	if !marked(r.ss.Tracking("b"), 2*twinRegion) {
		t.Fatal("the recovered region of b is not in its bitmap")
	}
	r.mv.ship()
	r.mg.promote()
	if c := r.pair("c"); c.State != Duplex {
		t.Fatalf("pair c: %+v, want recovered and duplex", c)
	}
}
