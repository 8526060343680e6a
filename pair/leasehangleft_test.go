package pair

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/bitmap"
	"duplex/disk"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
)

// The session's changes put off for the timer's lease are kept until made
// (see leasewait.go): the tests here show that what is kept meanwhile
// neither acts again at each look of the session's watcher nor lets a
// region of a write acknowledged go unmarked, so that a kill after the
// disk answers still copies every region written.

// copiedAfterAKill says whether a start after a kill now would copy vol's
// region at off: the activity log on disk marks it (a duplex pair's
// recovery, a suspended one's bitmap, a resync's copy take its marks), or
// the bitmap saved for the pair does.
func (r *leaseRig) copiedAfterAKill(vol string, off int64) bool {
	r.t.Helper()
	// The log's next write, for another region, carries what it holds.
	if err := r.al.Stick("b", leaseRigSize-leaseRigLogRegion, 4096); err != nil {
		r.t.Fatal(err)
	}
	marks, err := actlog.ReadMarks(nil, r.alPath)
	if err != nil {
		r.t.Fatal(err)
	}
	if regionsCover(marks[vol], off) {
		return true
	}
	b, err := os.ReadFile(r.mg.bitmapPath(vol))
	if err != nil {
		return false
	}
	bm, err := bitmap.Decode(b, leaseRigSize)
	return err == nil && marked(bm, off)
}

// TestACopyGivenUpWhoseSuspensionWaitsLetsTheNextCopyBe: the mover gives
// up a copy of a's resync while the timer's lease hangs, and a's
// suspension for it is put off. The copy given up is kept for that
// suspension, but its copier was let go once: the copies of a tried again
// meanwhile, waiting for their stamps as every update does, are not cut
// short again at each look of the session's watcher (each cut a copy
// failure, its copy left behind waiting for the lease). Once the disk
// answers, a is suspended, the region given up in its bitmap, and a kill
// then still copies it and the region written before a's resume.
func TestACopyGivenUpWhoseSuspensionWaitsLetsTheNextCopyBe(t *testing.T) {
	r := newLeaseRigLogged(t, 64<<20, true)
	r.ss.SetActivityLog(r.al)
	r.stop()
	<-r.runDone
	inEffect(t, r.mg, "the suspension of a", r.mg.Suspend("a"), "a", isSuspended)
	const written, gaveUp = 2 * leaseRigLogRegion, 5 * leaseRigLogRegion
	r.write("a", written)
	inEffect(t, r.mg, "the resume of a", r.mg.Resume("a"), "a", isResumed)
	ts := r.tm.Now()
	r.hang()
	r.mv.mu.Lock()
	r.mv.abandoned = append(r.mv.abandoned, recordset.Update{Volume: "a", Kind: recordset.KindCopy, Offset: gaveUp, Length: 4096, Timestamp: ts})
	r.mv.mu.Unlock()
	r.run()
	// The copier tries a's copy at once, and again after each failure,
	// 100 ms, 200 ms, 400 ms, 800 ms on.
	time.Sleep(1600 * time.Millisecond)
	if n := r.mg.CopyFailures(); n > 1 {
		t.Errorf("a's copy failed %d times while the suspension for the copy given up waits for the lease, want once at most "+
			"(the copier let go for the copy given up, not every copy of a after it)", n)
	}
	r.answersMeanwhile("a's suspension for the copy given up waits", Pending)
	r.answered()
	a := r.waitSuspended("a", false)
	if a.Reason != reasonCopyReadHung {
		t.Errorf("a suspended: %q, want %q", a.Reason, reasonCopyReadHung)
	}
	if bm := r.ss.Tracking("a"); !marked(bm, gaveUp) {
		t.Errorf("a suspended: the region of its copy given up, at %d, is not in its bitmap", gaveUp)
	}
	// The region written is in a's bitmap too, or was copied (captured
	// ahead of the suspension, marked in the log until acknowledged).
	for _, off := range []int64{written, gaveUp} {
		for end := time.Now().Add(10 * time.Second); !r.copiedAfterAKill("a", off); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(end) {
				t.Errorf("a's region at %d: a kill now would not copy it (neither the activity log on disk nor a's saved bitmap marks it)", off)
				break
			}
		}
	}
}

// TestAHungLeaseLetsTheOperatorGoOnBesideTheSessionsMarkersAnnouncedAgain:
// the link goes down with the sidefile full, and the session suspends
// every pair, dropping what the mover holds, a's write among it, and the
// suspensions' markers with it; the timer's lease hangs as the drop ends,
// before those markers are announced again. Their stamps wait for the
// lease, as a write's does, but not holding the manager's lock: the
// operator's resume of b is answered, refused naming the lease, the
// suspension of a (made the operator's) too, the status answers, and the
// manager's loop stops. Once the disk answers, the markers are announced
// again, each pair's before anything else of it (b's resume), and a kill
// then still copies a's write dropped.
func TestAHungLeaseLetsTheOperatorGoOnBesideTheSessionsMarkersAnnouncedAgain(t *testing.T) {
	r := newLeaseRigLogged(t, sidefile.Cost(1<<19), true) // never room for 1 MiB: full
	r.ss.SetActivityLog(r.al)
	const dropped = 3 * leaseRigLogRegion
	r.write("a", dropped)
	hung := make(chan struct{})
	r.mv.afterDrop = sync.OnceFunc(func() {
		// Hung, and the stamps past the mark on disk: the markers
		// announced again wait for the lease.
		r.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(r.dir, "lease"), Hang: r.held})
		r.clock.Add(int64(2 * time.Second))
		close(hung)
	})
	r.mv.connected.Store(false)
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("the session has not suspended itself 10 s after the link went down with the sidefile full")
	}
	// The markers tried, and waiting.
	r.operatorGoesOnWhile(t, "the markers announced again wait")
	r.release()
	r.run()
	r.mv.connected.Store(true)
	r.mv.ackAll(r.tm)
	// The write the disk let go still has its own data, sync and rename
	// to make: a resume before they end is refused naming the lease, as
	// while it hung, and says to run it again.
	r.resumeOnceAnswered("b")
	// What the sidefile holds now, in order: each pair's suspension
	// announced again, b's before its resume.
	ups, _, _ := r.ss.Drain()
	var seen []string
	for _, u := range ups {
		if u.Kind != recordset.KindMarker {
			continue
		}
		m, err := recordset.DecodeMarker(u)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, fmt.Sprintf("%s %s", u.Volume, m.State))
	}
	t.Logf("markers captured since the drop: %v", seen)
	want := []string{"a " + recordset.StateSuspended.String(), "b " + recordset.StateSuspended.String(), "b " + recordset.StateResync.String()}
	for i, j := 0, 0; i < len(want); j++ {
		if j == len(seen) {
			t.Fatalf("markers captured since the drop %v: want %v among them, in that order", seen, want)
		}
		if seen[j] == want[i] {
			i++
		}
	}
	for end := time.Now().Add(10 * time.Second); !r.copiedAfterAKill("a", dropped); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("a's write dropped at %d: a kill now would not copy it", dropped)
		}
	}
}

// recoveryHook is a subsystem that runs after once a crash recovery's copy
// has been captured and read.
type recoveryHook struct {
	*subsystem.Subsystem
	after func()
}

func (c *recoveryHook) CopyReporting(ctx context.Context, vol string, off, length int64, captured func()) error {
	err := c.Subsystem.CopyReporting(ctx, vol, off, length, captured)
	c.after()
	return err
}

// recoveredAt is where a's region the crash left marked lies.
const recoveredAt = 3 * leaseRigLogRegion

// startRecoveringHung starts the rig after a crash that left a's region
// at recoveredAt marked in the activity log, the timer's lease hanging
// once the start has copied it; it returns the rig, its manager running,
// and the last stamp as of the copy.
func startRecoveringHung(t *testing.T) (*leaseRig, *atomic.Int64) {
	t.Helper()
	var copied atomic.Int64
	r := newLeaseRigStarting(t, 64<<20, true, &leaseStart{
		marked: map[string][][2]int64{"a": {{recoveredAt, 4096}}},
		wrapA: func(r *leaseRig, ss *subsystem.Subsystem) Subsystem {
			return &recoveryHook{Subsystem: ss, after: sync.OnceFunc(func() {
				copied.Store(r.tm.Last()) // the copy's stamp is at or below
				// Hung, and the stamps past the mark on disk: the end
				// waits for the lease.
				r.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(r.dir, "lease"), Hang: r.held})
				r.clock.Add(int64(2 * time.Second))
			})}
		},
	})
	if copied.Load() == 0 {
		t.Fatal("the start did not copy a's region marked in the activity log")
	}
	r.wrote = make(chan error, 1)
	r.wrote <- nil // no write waits: the end's own stamp does
	return r, &copied
}

// TestAHungLeaseLetsTheStartGoOnBesideACrashRecoverysEnd: after a crash,
// the start copies the region of a that the activity log marks, and the
// timer's lease hangs before the recovery's end is stamped: the end waits
// for the lease, put off as a copy's end is, and the start ends. The
// operator's command on b is answered meanwhile, refused naming the
// lease, the status too, and the manager's loop stops; the region stays
// marked, so a kill copies it again. Once the disk answers, the end is
// stamped, after the recovery's copy, the volumes' writes go on, and the
// region is let go once the secondary has the end.
func TestAHungLeaseLetsTheStartGoOnBesideACrashRecoverysEnd(t *testing.T) {
	const at = recoveredAt
	r, copied := startRecoveringHung(t)
	if !r.copiedAfterAKill("a", at) {
		t.Errorf("a's region recovered, its end waiting for the lease: a kill now would not copy it again")
	}
	r.answersMeanwhile("the end of a's crash recovery waits", Duplex)
	r.answered()
	// The end, in the stream: a's copy-end marker.
	var end int64
	for deadline := time.Now().Add(10 * time.Second); end == 0; time.Sleep(10 * time.Millisecond) {
		ups, _, _ := r.ss.Drain()
		for _, u := range ups {
			if m, err := recordset.DecodeMarker(u); err == nil && u.Kind == recordset.KindMarker && u.Volume == "a" && m.State == recordset.StateCopyEnd {
				end = u.Timestamp
			}
		}
		if end == 0 && time.Now().After(deadline) {
			t.Fatal("the end of a's crash recovery is not stamped 10 s after the disk answered")
		}
	}
	if end <= copied.Load() {
		t.Errorf("the end of a's crash recovery %d, at or before its copy (at or before %d)", end, copied.Load())
	}
	if !r.copiedAfterAKill("a", at) {
		t.Errorf("a's region recovered, its end not acknowledged: a kill now would not copy it again")
	}
	r.write("b", 0) // the volumes' writes go on
	r.mv.ackAll(r.tm)
	// The region is let go (the rig's mover does not tell the log of the
	// acknowledgement of the copy itself, which keeps it marked here).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r.mg.mu.Lock()
		_, recovering := r.mg.recovering["a"]
		r.mg.mu.Unlock()
		if !recovering {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a's crash recovery is not over 10 s after the secondary acknowledged its end")
		}
	}
}

// TestAStopWhileACrashRecoverysEndWaitsIsNotClean: the end of a's crash
// recovery waits for the timer's lease, as above, when the primary
// stops: the state saved says not clean, so that the next start recovers
// the region again, under a recovery that ends (a clean stop would have
// it forget the region, the secondary holding the volumes for an end
// that never comes).
func TestAStopWhileACrashRecoverysEndWaitsIsNotClean(t *testing.T) {
	r, _ := startRecoveringHung(t)
	r.stop()
	<-r.runDone
	if err := r.mg.Close(true); err != nil {
		t.Fatal(err)
	}
	st, _, err := readPersisted(nil, r.mg.opts.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Clean {
		t.Errorf("stopped while the end of a's crash recovery waits for the lease: the state saved says clean")
	}
}

// markRefuser is a subsystem whose bounded markers (MarkWithin) fail
// other than for the timer's lease, and that runs after once a copy has
// been captured and read.
type markRefuser struct {
	*subsystem.Subsystem
	after func()
}

func (c *markRefuser) Copy(ctx context.Context, vol string, off, length int64) error {
	err := c.Subsystem.Copy(ctx, vol, off, length)
	c.after()
	return err
}

func (c *markRefuser) MarkWithin(vol string, m recordset.Marker, wait time.Duration) (int64, error) {
	return 0, fmt.Errorf("marker of %s refused", vol)
}

// TestAHungLeaseLetsTheOperatorGoOnBesideACopysEndStampedWithoutItsMarker:
// as TestAHungLeaseLetsTheOperatorGoOnBesideACopysEnd, the end's marker
// failing: the stamp taken in its stead waits for the lease within the
// manager's wait too, not holding its lock, and is put off as the
// marker's would be. Once the disk answers, the end is stamped after
// every update of the copy, and a is duplex once the secondary has it.
func TestAHungLeaseLetsTheOperatorGoOnBesideACopysEndStampedWithoutItsMarker(t *testing.T) {
	r := newLeaseRig(t, 64<<20)
	r.stop()
	<-r.runDone
	if err := r.mg.Suspend("a"); err != nil && !errors.Is(err, ErrSaveHung) { // slow under load: in effect
		t.Fatal(err)
	}
	r.write("a", 0)
	var copied atomic.Int64
	hooked := &markRefuser{Subsystem: r.ss, after: sync.OnceFunc(func() {
		last := r.tm.Last() // the copy's stamp is at or below
		r.hang()
		copied.Store(last)
	})}
	r.mg.vols["a"] = Volume{Name: "a", Subsystem: hooked, Size: leaseRigSize}
	if err := r.mg.Resume("a"); err != nil && !errors.Is(err, ErrSaveHung) { // in effect once saved
		t.Fatal(err)
	}
	r.run()
	for end := time.Now().Add(10 * time.Second); copied.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("a's copy has not run 10 s after its resume")
		}
	}
	r.answersMeanwhile("the end of a's copy, its marker failed, waits", Pending)
	if a := r.pairOf("a"); a.CopyEnd != 0 {
		t.Errorf("a's copy end, the lease hung: stamped %d", a.CopyEnd)
	}
	r.answered()
	a := r.waitPair("a", "with its copy's end stamped", func(p Pair) bool { return p.CopyEnd != 0 })
	if a.CopyEnd <= copied.Load() {
		t.Errorf("a's copy end %d, at or before its copy's update (at or before %d)", a.CopyEnd, copied.Load())
	}
	r.mv.ackAll(r.tm)
	r.waitPair("a", "duplex", func(p Pair) bool { return p.State == Duplex })
}

// deleteHook is a subsystem that runs after once a suspension's marker
// has been captured within a wait (an operator's), before what follows it.
type deleteHook struct {
	*subsystem.Subsystem
	after func()
}

func (c *deleteHook) SuspendMarkedWithin(vol string, bm *bitmap.Bitmap, m recordset.Marker, wait time.Duration) (int64, error) {
	ts, err := c.Subsystem.SuspendMarkedWithin(vol, bm, m, wait)
	c.after()
	return ts, err
}

// TestAHungLeaseLetsTheOperatorsDeletionBeAnsweredOnceItsSuspensionIsMarked:
// the operator deletes b, and the timer's lease hangs once b's
// suspension is captured, before the deletion's marker: that marker
// waits for its stamp on its own, as the markers the session announces
// again do (b's writes go to its bitmap meanwhile, none captured between
// the suspension and it), and the deletion is answered, in effect; the
// operator's suspension of a is answered too, refused naming the lease,
// and the manager's loop stops. Once the disk answers, the deletion's
// marker follows b's suspension.
func TestAHungLeaseLetsTheOperatorsDeletionBeAnsweredOnceItsSuspensionIsMarked(t *testing.T) {
	r := newLeaseRig(t, 64<<20)
	r.stop()
	<-r.runDone
	hooked := &deleteHook{Subsystem: r.ss, after: sync.OnceFunc(func() {
		r.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(r.dir, "lease"), Hang: r.held})
		r.clock.Add(int64(2 * time.Second))
	})}
	r.mg.vols["b"] = Volume{Name: "b", Subsystem: hooked, Size: leaseRigSize}
	r.run()
	bound := 2*r.mg.operatorWait() + time.Second
	deleted := make(chan error, 1)
	go func() {
		_, err := r.mg.Delete("b")
		deleted <- err
	}()
	select {
	case err := <-deleted:
		// Its save, on a disk that answers but a machine under load, may
		// take longer than the wait for it: the deletion is then answered
		// in effect, saved once the save ends, which must not wait for
		// the lease either.
		if err != nil && (!errors.Is(err, ErrSaveHung) || !strings.Contains(err.Error(), "in effect, but not yet saved")) {
			t.Errorf("the deletion of b, its suspension captured: %v", err)
		}
		if err != nil {
			savedDeleted(t, r.mg.statePath(), "b", "while the timer's lease hangs")
		}
	case <-time.After(bound):
		t.Fatalf("the deletion of b has not been answered after %s, its marker waiting for the timer's lease", bound)
	}
	suspended := make(chan error, 1)
	go func() { suspended <- r.mg.Suspend("a") }()
	select {
	case err := <-suspended:
		if err == nil || !strings.Contains(err.Error(), "timer's lease") {
			t.Errorf("the suspension of a while the lease hangs: %v, want it refused naming the timer's lease", err)
		}
	case <-time.After(bound):
		t.Errorf("the suspension of a has not been answered after %s while the lease hangs", bound)
	}
	r.stop()
	select {
	case <-r.runDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the manager's loop has not stopped 5 s after asked while the deletion's marker waits")
	}
	r.release()
	var seen []string
	for end := time.Now().Add(10 * time.Second); len(seen) < 2; time.Sleep(10 * time.Millisecond) {
		ups, _, _ := r.ss.Drain()
		for _, u := range ups {
			if m, err := recordset.DecodeMarker(u); err == nil && u.Kind == recordset.KindMarker && u.Volume == "b" {
				seen = append(seen, m.State.String())
			}
		}
		if time.Now().After(end) {
			break
		}
	}
	if want := []string{recordset.StateSuspended.String(), recordset.StateDeleted.String()}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("b's markers once the disk answered: %v, want %v", seen, want)
	}
}

// TestAHungLeaseLetsTheOperatorGoOnBesideTheSessionsDrop: as
// TestAHungLeaseLetsTheOperatorGoOnBesideTheSessionsMarkersAnnouncedAgain,
// the lease hanging as the drop begins: the drop's own stamp (the
// subsystem's horizon, as the mover's cut takes it) waits for the lease,
// the pairs suspended already. The operator's resume of b, which waits
// for the drop to end (its updates must land in b's bitmap before b's
// resume takes it), is answered, refused naming the lease, the
// suspension of a too, and the status; the manager's loop stops, the
// drop left to end on its own. Once the disk answers, the drop ends, a's
// write dropped lands in a's bitmap, and b resumes.
func TestAHungLeaseLetsTheOperatorGoOnBesideTheSessionsDrop(t *testing.T) {
	r := newLeaseRigLogged(t, sidefile.Cost(1<<19), true) // never room for 1 MiB: full
	r.ss.SetActivityLog(r.al)
	const dropped = 3 * leaseRigLogRegion
	r.write("a", dropped)
	hung := make(chan struct{})
	r.mv.beforeDrop = sync.OnceFunc(func() {
		r.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(r.dir, "lease"), Hang: r.held})
		r.clock.Add(int64(2 * time.Second))
		close(hung)
	})
	r.mv.connected.Store(false)
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("the session has not suspended itself 10 s after the link went down with the sidefile full")
	}
	r.operatorGoesOnWhile(t, "the session's drop waits")
	r.release()
	for end := time.Now().Add(10 * time.Second); !marked(r.ss.Tracking("a"), dropped); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("a's write dropped is not in a's bitmap 10 s after the disk answered")
		}
	}
	r.run()
	r.mv.connected.Store(true)
	r.mv.ackAll(r.tm)
	r.resumeOnceAnswered("b")
	for end := time.Now().Add(10 * time.Second); !r.copiedAfterAKill("a", dropped); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("a's write dropped at %d: a kill now would not copy it", dropped)
		}
	}
}

// savedDeleted waits up to 10 s for the pair state at path to say vol is
// deleted (when says what holds meanwhile).
func savedDeleted(t *testing.T, path, vol, when string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for _, p := range savedPersisted(t, path).Pairs {
			if p.Volume == vol && p.Deleted {
				return
			}
		}
		if time.Now().After(end) {
			t.Fatalf("the deletion of %s not saved 10 s after answered, %s", vol, when)
		}
	}
}

// resumeOnceAnswered resumes vol once the disk of the timer's lease
// answers again, the link up: a refusal naming the lease (its write let
// go not yet ended) is run again, as it says, for up to 10 s; a pair no
// longer suspended was resumed by the link's return meanwhile, as
// good; any other refusal fails.
func (r *leaseRig) resumeOnceAnswered(vol string) {
	r.t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := r.mg.Resume(vol)
		if err == nil {
			return
		}
		if p := r.pairOf(vol); p.State != Suspended {
			r.t.Logf("%s resumed by the link's return: %v", vol, err)
			return
		}
		if !leaseHung(err) {
			r.t.Fatalf("the resume of %s once the disk answered: %v", vol, err)
		}
		if time.Now().After(end) {
			r.t.Fatalf("the resume of %s 10 s after the disk answered: %v", vol, err)
		}
	}
}

// operatorGoesOnWhile checks, 300 ms into a wait for the timer's lease
// (what waits says what waits), that the operator's resume of b is
// answered, refused naming the lease, the suspension of a (suspended by
// the session) and the status too, and that the manager's loop stops.
func (r *leaseRig) operatorGoesOnWhile(t *testing.T, waits string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	bound := 2*r.mg.operatorWait() + time.Second
	within := func(what string, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			f()
		}()
		select {
		case <-done:
		case <-time.After(bound):
			t.Errorf("%s has not been answered after %s while %s for the timer's lease", what, bound, waits)
		}
	}
	within("the resume of b", func() {
		err := r.mg.Resume("b")
		t.Logf("the resume of b: %v", err)
		if err == nil || !strings.Contains(err.Error(), "timer's lease") {
			t.Errorf("the resume of b while %s for the lease: %v, want it refused naming the timer's lease", waits, err)
		}
	})
	within("the suspension of a", func() {
		// Its save slower than SaveWait under load, it is answered in
		// effect, not yet saved (ErrSaveHung): answered all the same.
		if err := r.mg.Suspend("a"); err != nil && !errors.Is(err, ErrSaveHung) {
			t.Errorf("the suspension of a, suspended by the session: %v", err)
		}
	})
	within("the status", func() {
		for _, p := range r.mg.Pairs() {
			if p.State != Suspended {
				t.Errorf("%s while %s: %s, want suspended", p.Volume, waits, p.State)
			}
		}
	})
	r.stop()
	select {
	case <-r.runDone:
	case <-time.After(5 * time.Second):
		t.Errorf("the manager's loop has not stopped 5 s after asked while %s for the lease", waits)
	}
	if t.Failed() {
		t.FailNow()
	}
}
