package pair

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/disk"
)

// deletionWaitsBesideASlowSave makes a lease rig whose a the operator
// suspended, then deletes b: the timer's lease hangs once b's suspension
// is captured, so the deletion's marker is put off for it, and the pair
// state's saves hang (saveHeld, until closed) from then on.
func deletionWaitsBesideASlowSave(t *testing.T) (r *leaseRig, saveHeld chan struct{}, releaseSave func()) {
	t.Helper()
	r = newLeaseRig(t, 64<<20)
	inEffect(t, r.mg, "the suspension of a", r.mg.Suspend("a"), "a", isSuspended)
	r.stop()
	<-r.runDone
	saveHeld = make(chan struct{})
	releaseSave = sync.OnceFunc(func() { close(saveHeld) })
	t.Cleanup(releaseSave)
	hooked := &deleteHook{Subsystem: r.ss, after: sync.OnceFunc(func() {
		r.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(r.dir, "lease"), Hang: r.held})
		r.stateFS.Inject(disk.Fault{Op: disk.OpWrite, Under: r.state, Hang: saveHeld})
		r.clock.Add(int64(2 * time.Second))
	})}
	r.mg.vols["b"] = Volume{Name: "b", Subsystem: hooked, Size: leaseRigSize}
	r.run()
	return r, saveHeld, releaseSave
}

// TestAResumeWhileADeletionsMarkerWaitsForTheLeaseIsRefusedBesideASlowSave:
// the operator's deletion of b puts its marker off for the timer's lease,
// hung, and is answered not yet saved, its save held; the operator then
// resumes a, suspended. The resume is refused naming the lease, and a
// stays suspended once the save ends, the lease still hung: not answered
// "not yet in effect, it takes effect once the save ends", then refused
// for the lease once the save ended (logged ERROR).
func TestAResumeWhileADeletionsMarkerWaitsForTheLeaseIsRefusedBesideASlowSave(t *testing.T) {
	r, _, releaseSave := deletionWaitsBesideASlowSave(t)
	if _, err := r.mg.Delete("b"); err != nil && !errors.Is(err, ErrSaveHung) {
		t.Fatalf("the deletion of b, its marker put off for the lease: %v", err)
	}
	waitUntil(t, 10*time.Second, "the deletion's marker put off for the lease", func() bool {
		return strings.Contains(r.logs.String(), "deletion waits for the write of the timer's lease")
	})
	err := r.mg.Resume("a")
	t.Logf("the resume of a: %v", err)
	if err == nil || errors.Is(err, ErrSaveHung) || !strings.Contains(err.Error(), "timer's lease") {
		t.Errorf("the resume of a while the deletion's marker waits for the lease, a save under way: %v, want it refused naming the lease", err)
	}
	releaseSave()
	time.Sleep(3 * r.mg.operatorWait())
	if a := r.pairOf("a"); a.State != Suspended {
		t.Errorf("a is %s once the save ended, the lease hung: want suspended", a.State)
	}
	if lines := r.logs.String(); strings.Contains(lines, "not in effect after all") {
		t.Errorf("a resume answered not yet in effect failed once the save ended:\n%s", lines)
	}
}

// TestAResumeOfThePairWhoseDeletionWaitsForTheLeaseIsRefusedBesideASlowSave:
// the operator's deletion of b puts its marker off for the timer's lease,
// hung, and is answered not yet saved, its save held; the operator then
// resumes b. The resume is refused at once, saying b is not suspended (it
// is deleted) and naming the lease its deletion's marker waits for: not
// answered "not yet in effect, it takes effect once the save ends", and
// then refused once the save ended (logged ERROR), b never to be resumed.
func TestAResumeOfThePairWhoseDeletionWaitsForTheLeaseIsRefusedBesideASlowSave(t *testing.T) {
	r, _, releaseSave := deletionWaitsBesideASlowSave(t)
	if _, err := r.mg.Delete("b"); err != nil && !errors.Is(err, ErrSaveHung) {
		t.Fatalf("the deletion of b, its marker put off for the lease: %v", err)
	}
	waitUntil(t, 10*time.Second, "the deletion's marker put off for the lease, and the pair state's save to wait SaveWait", func() bool {
		return strings.Contains(r.logs.String(), "deletion waits for the write of the timer's lease") && r.mg.SaveUnderWay() >= r.mg.operatorWait()
	})
	err := r.mg.Resume("b")
	t.Logf("the resume of b: %v", err)
	if err == nil || errors.Is(err, ErrSaveHung) || !strings.Contains(err.Error(), "not suspended") || !strings.Contains(err.Error(), "timer's lease") {
		t.Errorf("the resume of b, deleted, its marker waiting for the lease, a save under way: %v, want it refused as not suspended, naming the lease", err)
	}
	releaseSave()
	time.Sleep(3 * r.mg.operatorWait())
	if lines := r.logs.String(); strings.Contains(lines, "not in effect after all") {
		t.Errorf("a resume answered not yet in effect failed once the save ended:\n%s", lines)
	}
}
