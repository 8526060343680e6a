package pair

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/bitmap"
	"duplex/consistency"
	"duplex/disk"
	"duplex/mover"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
)

// The session's own actions on its pairs (the suspension for a failed
// write, for a copy the mover gave up, for the link down, its resume on
// the link's return, and a copy's end) stamp their markers under the
// subsystem's ordering lock, holding the pair manager's lock. With the
// disk of the common timer's lease hung, a client's write holds the
// ordering lock while its stamp waits for the lease's write: the tests
// here show that the operator's command on another pair and the status
// are answered meanwhile, within the manager's wait for a save, that the
// manager's loop stops, and that once the disk answers the action is
// made with the pair's state as it should be.

const leaseRigSize = 1 << 20

// leaseRig is a manager of pairs a and b, duplex, over one subsystem on
// a timer whose lease is on a disk the test hangs (hang), its clock the
// test's.
type leaseRig struct {
	t       *testing.T
	dir     string
	clock   atomic.Int64
	tm      *timer.Timer
	fs      *disk.Injector
	stateFS *disk.Injector // the pair state's disk
	state   string         // the pair state's directory
	held    chan struct{}
	release func()
	ss      *subsystem.Subsystem
	mv      *leaseMover
	mg      *Manager
	logs    *lockedBuffer
	wrote   chan error // b's write that waits for the lease
	stop    func()     // stops Run, saying whether it returned in time
	runDone chan struct{}
	al      *actlog.Log // the activity log, if the rig keeps one
	alPath  string
}

// leaseMover is a mover whose link, acknowledgements, refusals and copies
// given up the test sets; Drop drains the subsystem as mover.Drop does.
type leaseMover struct {
	ss        *subsystem.Subsystem
	connected atomic.Bool
	acked     atomic.Int64
	ackedAt   atomic.Int64 // unix ns of the last acknowledgement
	mu        sync.Mutex
	abandoned []recordset.Update
	refusals  uint64
	refusal   transport.Refusal
	stale     uint64 // of the refusals, those of a stale record set
	// beforeDrop and afterDrop, if set, run as a Drop begins, and once it
	// has handed over what it drops.
	beforeDrop, afterDrop func()
}

func (m *leaseMover) Stats() mover.Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return mover.Stats{Connected: m.connected.Load(), Acked: transport.Position{Group: 1, Time: m.acked.Load()},
		LastAckedTime: time.Unix(0, m.ackedAt.Load()), Refusals: m.refusals, LastRefusal: "secondary refused the session: " + m.refusal.Reason,
		LastRefusalKind: m.refusal.Kind, LastRefusalReason: m.refusal.Reason, LastRefusalPasses: m.refusal.Passing, StaleRefusals: m.stale, JournalFreeAt: time.Unix(0, m.ackedAt.Load())}
}

func (m *leaseMover) Drop(mark func(recordset.Update)) {
	if m.beforeDrop != nil {
		m.beforeDrop()
	}
	ups, _, _ := m.ss.Drain()
	var cost int64
	for _, u := range ups {
		mark(u)
		cost += sidefile.Cost(len(u.Data))
	}
	m.ss.Sidefile().Release(cost)
	if m.afterDrop != nil {
		m.afterDrop()
	}
}

func (m *leaseMover) Abandoned() []recordset.Update {
	m.mu.Lock()
	defer m.mu.Unlock()
	ups := m.abandoned
	m.abandoned = nil
	return ups
}

// ackAll has the secondary acknowledge everything stamped so far.
func (m *leaseMover) ackAll(tm *timer.Timer) {
	m.acked.Store(tm.Last())
	m.ackedAt.Store(time.Now().UnixNano())
}

// newLeaseRig opens the rig, its sidefile of limit bytes, its manager
// running (Run).
func newLeaseRig(t *testing.T, limit int64) *leaseRig {
	t.Helper()
	return newLeaseRigLogged(t, limit, false)
}

// leaseRigLogRegion is the region of the rig's activity log: the rig's
// volumes hold several.
const leaseRigLogRegion = 64 << 10

// newLeaseRigLogged is newLeaseRig, with an activity log of its manager's
// (on a disk that answers) if logged.
func newLeaseRigLogged(t *testing.T, limit int64, logged bool) *leaseRig {
	t.Helper()
	return newLeaseRigStarting(t, limit, logged, nil)
}

// leaseStart is how a rig starts after a crash: the regions its activity
// log marked (which the start recovers), and a's subsystem as the test
// wraps it.
type leaseStart struct {
	marked map[string][][2]int64
	wrapA  func(*leaseRig, *subsystem.Subsystem) Subsystem
}

// newLeaseRigStarting is newLeaseRigLogged, starting after a crash as st
// says if not nil (logged, then): its manager's Open is waited for only
// as long as two of its waits for a save and a margin.
func newLeaseRigStarting(t *testing.T, limit int64, logged bool, st *leaseStart) *leaseRig {
	t.Helper()
	r := &leaseRig{t: t, dir: t.TempDir(), fs: disk.NewInjector(nil), stateFS: disk.NewInjector(nil), held: make(chan struct{}), logs: &lockedBuffer{}}
	r.release = sync.OnceFunc(func() { close(r.held) })
	t.Cleanup(r.release) // before the rest of the cleanup: whatever waits ends
	r.clock.Store(time.Date(2026, 12, 5, 22, 0, 0, 0, time.UTC).UnixNano())
	if err := os.MkdirAll(filepath.Join(r.dir, "lease"), 0o755); err != nil {
		t.Fatal(err)
	}
	tm, err := timer.OpenPersistent(r.fs, filepath.Join(r.dir, "lease", "timer.json"), r.clock.Load, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.tm = tm
	// Run after the manager's loop has ended, before the directory goes:
	// the lease's write released then would otherwise leave its temporary
	// file in it as it is removed. Closed, the timer writes no more.
	t.Cleanup(func() {
		r.release()
		_ = tm.Close()
		leaseWritten(t, tm, filepath.Join(r.dir, "lease"))
	})
	vols := map[string]*volume.Volume{}
	for _, n := range []string{"a", "b"} {
		v, err := volume.Open(filepath.Join(r.dir, n+".img"), leaseRigSize)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		vols[n] = v
	}
	r.ss = subsystem.New("s1", tm, sidefile.New(limit), vols, []string{"a", "b"})
	r.mv = &leaseMover{ss: r.ss}
	r.mv.connected.Store(true)
	r.state = savePairs(t, r.dir, st == nil, duplexAB(leaseRigSize)...)
	opts := Options{Dir: r.state, FS: r.stateFS, SaveWait: 200 * time.Millisecond, SuspendAfter: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(r.logs, nil))}
	if logged {
		r.alPath = filepath.Join(r.dir, "actlog")
		sizes := map[string]int64{"a": leaseRigSize, "b": leaseRigSize}
		if st != nil {
			// The run that crashed.
			al, _, err := actlog.Open(r.alPath, sizes, leaseRigLogRegion)
			if err != nil {
				t.Fatal(err)
			}
			for vol, rs := range st.marked {
				for _, rg := range rs {
					if err := al.Stick(vol, rg[0], rg[1]); err != nil {
						t.Fatal(err)
					}
				}
			}
			al.Close()
		}
		al, recovered, err := actlog.Open(r.alPath, sizes, leaseRigLogRegion)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { al.Close() })
		r.al, opts.ActivityLog, opts.Recovered = al, al, recovered
	}
	var a Subsystem = r.ss
	if st != nil && st.wrapA != nil {
		a = st.wrapA(r, r.ss)
	}
	opened := make(chan error, 1)
	go func() {
		var err error
		r.mg, err = Open(opts, r.mv, []Volume{{Name: "a", Subsystem: a, Size: leaseRigSize}, {Name: "b", Subsystem: r.ss, Size: leaseRigSize}})
		opened <- err
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2*opts.SaveWait + 2*time.Second):
		t.Fatalf("the manager's start has not ended after %s:\n%s", 2*opts.SaveWait+2*time.Second, r.logs.String())
	}
	r.mv.ackAll(tm)
	r.mg.promote()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the manager's log:\n%s", r.logs.String())
		}
	})
	r.run()
	return r
}

// run runs the manager until r.stop.
func (r *leaseRig) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.mg.Run(ctx)
	}()
	r.runDone = done
	r.stop = cancel
	r.t.Cleanup(func() {
		r.release() // a test that failed left it hung
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			r.t.Errorf("the manager's loop has not ended 30 s after the disk answered")
		}
	})
}

// write writes 4 KiB to vol at off, acknowledged.
func (r *leaseRig) write(vol string, off int64) {
	r.t.Helper()
	if err := r.ss.Write(context.Background(), vol, make([]byte, 4096), off); err != nil {
		r.t.Fatal(err)
	}
}

// hang hangs the lease's disk, then has the stamps pass the lease's mark
// on disk, and writes to b until that write waits for the lease's write,
// holding the subsystem's ordering lock meanwhile.
func (r *leaseRig) hang() {
	r.t.Helper()
	r.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(r.dir, "lease"), Hang: r.held})
	r.clock.Add(int64(2 * time.Second))
	r.wrote = make(chan error, 1)
	go func() { r.wrote <- r.ss.Write(context.Background(), "b", make([]byte, 4096), 8192) }()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if d, waiting := r.tm.LeaseWait(); d > 0 && waiting > 0 {
			return
		}
		if time.Now().After(end) {
			r.t.Fatal("no stamp waits for the timer's lease 10 s after its disk hung")
		}
	}
}

// answersMeanwhile checks, while the session's action (what) waits for
// the lease, that the operator's suspension of b is answered within the
// manager's wait for a save, twice (an attempt of the action under way
// may hold the manager's lock as long) and a margin, refused naming the
// timer's lease, b left duplex; that the status answers, a as was; that
// the log says what waits; and that the manager's loop stops.
func (r *leaseRig) answersMeanwhile(what string, was State) {
	r.t.Helper()
	// The action tried, and waiting, the session's watcher looking every
	// few milliseconds.
	time.Sleep(300 * time.Millisecond)
	bound := 2*r.mg.operatorWait() + time.Second
	answered := make(chan error, 1)
	go func() { answered <- r.mg.Suspend("b") }()
	select {
	case err := <-answered:
		r.t.Logf("the suspension of b while %s: %v", what, err)
		if err == nil || !strings.Contains(err.Error(), "timer's lease") {
			r.t.Errorf("the suspension of b while %s: %v, want it refused naming the timer's lease", what, err)
		}
	case <-time.After(bound):
		r.t.Errorf("the suspension of b has not been answered after %s while %s", bound, what)
	}
	status := make(chan []Pair, 1)
	go func() { status <- r.mg.Pairs() }()
	select {
	case ps := <-status:
		for _, p := range ps {
			if want := map[string]State{"a": was, "b": Duplex}[p.Volume]; p.State != want {
				r.t.Errorf("%s while %s: %s, want %s", p.Volume, what, p.State, want)
			}
		}
	case <-time.After(bound):
		r.t.Errorf("the status has not been answered after %s while %s", bound, what)
	}
	// Logged as the wait is put off, which the answers above need not
	// follow on a loaded machine.
	for end := time.Now().Add(10 * time.Second); !strings.Contains(r.logs.String(), "waits for the write of the timer's lease"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			r.t.Errorf("the log does not say what waits for the timer's lease while %s, 10 s on", what)
			break
		}
	}
	r.stop()
	select {
	case <-r.runDone:
	case <-time.After(5 * time.Second):
		r.t.Errorf("the manager's loop has not stopped 5 s after asked while %s", what)
	}
	if r.t.Failed() {
		r.t.FailNow()
	}
}

// answered lets the disk answer, waits for b's write, and runs the
// manager again.
func (r *leaseRig) answered() {
	r.t.Helper()
	r.release()
	select {
	case err := <-r.wrote:
		if err != nil {
			r.t.Fatalf("b's write once the disk answered: %v", err)
		}
	case <-time.After(10 * time.Second):
		r.t.Fatal("b's write has not ended 10 s after the disk answered")
	}
	r.run()
}

// waitPair waits until a's pair satisfies ok.
func (r *leaseRig) waitPair(vol, what string, ok func(Pair) bool) Pair {
	r.t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for _, p := range r.mg.Pairs() {
			if p.Volume == vol && ok(p) {
				return p
			}
		}
		if time.Now().After(end) {
			r.t.Fatalf("%s not %s 10 s after the disk answered: %+v", vol, what, r.mg.Pairs())
		}
	}
}

// waitSuspended waits until vol's suspension by the session has ended
// (by the session's own, if auto): the status publishes a pair suspended
// as its suspension begins, before its marker (see
// publishSuspendingLocked), its reason and the regions the change marks in
// its bitmap only as the change ends, with them. A suspended pair with
// no reason yet is one whose suspension is still under way.
func (r *leaseRig) waitSuspended(vol string, auto bool) Pair {
	r.t.Helper()
	return r.waitPair(vol, "suspended by the session", func(p Pair) bool {
		return p.State == Suspended && p.Reason != "" && (p.Auto || !auto)
	})
}

// TestAHungLeaseLetsTheOperatorGoOnBesideAFailedWritesSuspension: a's
// volume fails a write while the timer's lease hangs: the session's
// suspension of a waits for the lease, not holding the operator's
// command and the status up. Once the disk answers, a is suspended for
// its failed write, the region in its bitmap: the failed write is not
// lost.
func TestAHungLeaseLetsTheOperatorGoOnBesideAFailedWritesSuspension(t *testing.T) {
	r := newLeaseRig(t, 64<<20)
	r.hang()
	r.ss.AddFailedWrite(subsystem.FailedWrite{Volume: "a", Offset: 3 * bitmap.DefaultRegion, Length: 4096, Err: syscall.EIO})
	r.answersMeanwhile("a's suspension for its failed write waits", Duplex)
	r.answered()
	a := r.waitSuspended("a", false)
	if !strings.Contains(a.Reason, "write to its primary volume failed") {
		t.Errorf("a suspended: %q, want its failed write said", a.Reason)
	}
	if bm := r.ss.Tracking("a"); bm == nil || !marked(bm, 3*bitmap.DefaultRegion) {
		t.Errorf("a suspended for its failed write: the region is not in its bitmap (%v)", bm)
	}
}

// TestAHungLeaseLetsTheOperatorGoOnBesideAnAbandonedCopysSuspension: the
// mover gives up a copy of a (its read hung) while the timer's lease
// hangs: as for a failed write. Once the disk answers, a is suspended,
// the copy's region in its bitmap, to copy again.
func TestAHungLeaseLetsTheOperatorGoOnBesideAnAbandonedCopysSuspension(t *testing.T) {
	r := newLeaseRig(t, 64<<20)
	ts := r.tm.Now()
	r.hang()
	r.mv.mu.Lock()
	r.mv.abandoned = append(r.mv.abandoned, recordset.Update{Volume: "a", Kind: recordset.KindCopy, Offset: 5 * bitmap.DefaultRegion, Length: 4096, Timestamp: ts})
	r.mv.mu.Unlock()
	r.answersMeanwhile("a's suspension for the copy given up waits", Duplex)
	r.answered()
	a := r.waitSuspended("a", false)
	if a.Reason != reasonCopyReadHung {
		t.Errorf("a suspended: %q, want %q", a.Reason, reasonCopyReadHung)
	}
	if bm := r.ss.Tracking("a"); bm == nil || !marked(bm, 5*bitmap.DefaultRegion) {
		t.Errorf("a suspended for its copy given up: the region is not in its bitmap (%v)", bm)
	}
}

// TestAHungLeaseLetsTheOperatorGoOnBesideTheSessionsSuspension: the link
// goes down with the sidefile full while the timer's lease hangs: the
// session's suspension of every pair waits for the lease, as above. Once
// the disk answers, both pairs are suspended together, b's write that
// waited captured before it.
func TestAHungLeaseLetsTheOperatorGoOnBesideTheSessionsSuspension(t *testing.T) {
	r := newLeaseRig(t, sidefile.Cost(1<<19)) // never room for 1 MiB: full
	r.hang()
	r.mv.connected.Store(false)
	r.answersMeanwhile("the session's suspension waits", Duplex)
	r.answered()
	for _, vol := range []string{"a", "b"} {
		p := r.waitSuspended(vol, true)
		if p.Reason != reasonLinkDown {
			t.Errorf("%s suspended: %q, want %q", vol, p.Reason, reasonLinkDown)
		}
	}
	// The updates held go after the suspension is published, its reason
	// with it (the drop runs without the manager's lock).
	for end := time.Now().Add(10 * time.Second); !marked(r.ss.Tracking("b"), 8192); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("b's write, dropped with the rest at the session's suspension, is not in its bitmap 10 s after it")
		}
	}
}

// TestAHungLeaseLetsTheOperatorGoOnBesideAStaleRefusalsSuspension: as
// TestAHungLeaseLetsTheOperatorGoOnBesideTheSessionsSuspension, for the
// secondary's refusal of a stale record set: the suspension is made once
// the disk answers, not forgotten.
func TestAHungLeaseLetsTheOperatorGoOnBesideAStaleRefusalsSuspension(t *testing.T) {
	r := newLeaseRig(t, 64<<20)
	r.hang()
	r.mv.mu.Lock()
	r.mv.refusals++
	r.mv.refusal = transport.Refusal{Reason: "refusing a record set: " + consistency.ErrStale.Error(), Passing: true, Kind: transport.RefusalStale}
	r.mv.stale++
	r.mv.connected.Store(false) // the refusal ends the session
	r.mv.mu.Unlock()
	r.answersMeanwhile("the session's suspension for a stale record set waits", Duplex)
	r.answered()
	for _, vol := range []string{"a", "b"} {
		p := r.waitSuspended(vol, true)
		if p.Reason != reasonStale {
			t.Errorf("%s suspended: %q, want %q", vol, p.Reason, reasonStale)
		}
	}
}

// TestAHungLeaseLetsTheOperatorGoOnBesideTheSessionsResume: the link
// returns while the timer's lease hangs, after the session suspended
// every pair (the secondary refused a stale record set, and the link
// went down): its resume of a waits for the lease, as above. Once the
// disk answers, a resumes, the region written to it while suspended to
// copy, and is duplex once the secondary acknowledges its copy.
func TestAHungLeaseLetsTheOperatorGoOnBesideTheSessionsResume(t *testing.T) {
	r := newLeaseRig(t, 64<<20)
	r.mv.mu.Lock()
	r.mv.refusals++
	r.mv.refusal = transport.Refusal{Reason: "refusing a record set: " + consistency.ErrStale.Error(), Passing: true, Kind: transport.RefusalStale}
	r.mv.stale++
	r.mv.connected.Store(false)
	r.mv.mu.Unlock()
	for _, vol := range []string{"a", "b"} {
		r.waitPair(vol, "suspended by the session", func(p Pair) bool { return p.State == Suspended && p.Auto })
	}
	r.write("a", 0)
	if err := r.mg.Resume("b"); err != nil && !errors.Is(err, ErrSaveHung) { // b the operator's again, once saved
		t.Fatal(err)
	}
	// A resume answered ErrSaveHung takes effect, its copy's end stamped,
	// only once its save ends: acknowledged before that, the end is after
	// all the secondary acknowledged, and b stays pending.
	r.waitPair("b", "with its copy's end stamped", func(p Pair) bool { return p.State == Duplex || p.State != Suspended && p.CopyEnd != 0 })
	r.mv.ackAll(r.tm)
	r.waitPair("b", "duplex", func(p Pair) bool { return p.State == Duplex })
	r.hang()
	r.mv.ackAll(r.tm)
	r.mv.connected.Store(true)
	r.answersMeanwhile("the session's resume waits", Suspended)
	r.answered()
	r.waitPair("a", "resumed", func(p Pair) bool { return p.State != Suspended })
	r.waitPair("a", "with its copy's end stamped", func(p Pair) bool { return p.CopyEnd != 0 })
	r.mv.ackAll(r.tm)
	r.waitPair("a", "duplex", func(p Pair) bool { return p.State == Duplex })
}

// TestAHungLeaseLetsTheOperatorGoOnBesideACopysEnd: a's resync copies its
// last region, and the timer's lease hangs before its end is stamped:
// the end waits for the lease, as above, and a stays pending, its end not
// stamped. Once the disk answers, the end is stamped after every update
// of the copy, and a is duplex once the secondary acknowledges it.
func TestAHungLeaseLetsTheOperatorGoOnBesideACopysEnd(t *testing.T) {
	r := newLeaseRig(t, 64<<20)
	r.stop()
	<-r.runDone
	inEffect(t, r.mg, "the suspension of a", r.mg.Suspend("a"), "a", isSuspended)
	r.write("a", 0)
	var copied atomic.Int64
	hooked := &copyHook{Subsystem: r.ss, after: sync.OnceFunc(func() {
		last := r.tm.Last() // the copy's stamp is at or below
		r.hang()
		copied.Store(last)
	})}
	r.mg.vols["a"] = Volume{Name: "a", Subsystem: hooked, Size: leaseRigSize}
	inEffect(t, r.mg, "the resume of a", r.mg.Resume("a"), "a", isResumed)
	r.run()
	for end := time.Now().Add(10 * time.Second); copied.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("a's copy has not run 10 s after its resume")
		}
	}
	r.answersMeanwhile("the end of a's copy waits", Pending)
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

// pairOf returns vol's pair as the status has it.
func (r *leaseRig) pairOf(vol string) Pair {
	for _, p := range r.mg.Pairs() {
		if p.Volume == vol {
			return p
		}
	}
	r.t.Fatalf("no pair %s", vol)
	return Pair{}
}

// copyHook is a subsystem that runs after once a copy has been captured
// and read.
type copyHook struct {
	*subsystem.Subsystem
	after func()
}

func (c *copyHook) Copy(ctx context.Context, vol string, off, length int64) error {
	err := c.Subsystem.Copy(ctx, vol, off, length)
	c.after()
	return err
}
