package pair

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/disk"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/volume"
)

// A start stamps, before it serves any I/O, the markers each pair's
// writes must follow at the secondary: a new pair's first copy, a copy
// it continues, a suspension or deletion announced again, the
// restart's suspension of every pair for the resyncs it starts, and a
// crash recovery's resync. With the common timer's lease on a disk
// that stopped answering, each such stamp waits for the lease's write:
// the tests here show that the start then fails within a bounded time,
// naming the lease, rather than hold for ever, and that it saves
// nothing (the state on disk is the one the last run left, which the
// next start reads again).

// hungStart is how a start under a hung lease begins: the pairs saved by
// the last run, whether it stopped cleanly, and the regions its activity
// log marked (logged if not nil).
type hungStart struct {
	name   string
	clean  bool
	pairs  []*Pair
	marked map[string][][2]int64
	// hangAfterMark hangs the lease only once the start has captured
	// its first marker: the copies of a crash recovery then wait for
	// their stamps.
	hangAfterMark bool
}

// markHook is a subsystem that runs after once a marker is captured.
type markHook struct {
	*subsystem.Subsystem
	after func()
}

func (h *markHook) Mark(vol string, m recordset.Marker) (int64, error) {
	ts, err := h.Subsystem.Mark(vol, m)
	h.after()
	return ts, err
}

func (h *markHook) MarkWithin(vol string, m recordset.Marker, wait time.Duration) (int64, error) {
	ts, err := h.Subsystem.MarkWithin(vol, m, wait)
	h.after()
	return ts, err
}

// openWithLeaseHung opens a manager of pairs a and b as st says, the
// timer's lease hung (and the stamps past its mark on disk) from before
// the start. It returns Open's error, how long Open took, and the pair
// state on disk before and after; the test fails if Open has not
// returned within bound.
func openWithLeaseHung(t *testing.T, st hungStart, bound time.Duration) (error, time.Duration, []byte, []byte, string) {
	t.Helper()
	dir := t.TempDir()
	fs := disk.NewInjector(nil)
	held := make(chan struct{})
	release := sync.OnceFunc(func() { close(held) })
	t.Cleanup(release)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC).UnixNano())
	leaseDir := filepath.Join(dir, "lease")
	if err := os.MkdirAll(leaseDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tm, err := timer.OpenPersistent(fs, filepath.Join(leaseDir, "timer.json"), clock.Load, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		release()
		_ = tm.Close()
		leaseWritten(t, tm, leaseDir)
	})
	vols := map[string]*volume.Volume{}
	for _, n := range []string{"a", "b"} {
		v, err := volume.Open(filepath.Join(dir, n+".img"), leaseRigSize)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		vols[n] = v
	}
	ss := subsystem.New("s1", tm, sidefile.New(64<<20), vols, []string{"a", "b"})
	mv := &leaseMover{ss: ss}
	state := savePairs(t, dir, st.clean, st.pairs...)
	logs := &lockedBuffer{}
	opts := Options{Dir: state, SaveWait: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	if st.marked != nil {
		alPath := filepath.Join(dir, "actlog")
		sizes := map[string]int64{"a": leaseRigSize, "b": leaseRigSize}
		al, _, err := actlog.Open(alPath, sizes, leaseRigLogRegion)
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
		al, recovered, err := actlog.Open(alPath, sizes, leaseRigLogRegion)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { al.Close() })
		opts.ActivityLog, opts.Recovered = al, recovered
		ss.SetActivityLog(al)
	}
	before, err := os.ReadFile(filepath.Join(state, "pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	hang := func() {
		fs.Inject(disk.Fault{Op: disk.OpWrite, Under: leaseDir, Hang: held})
		clock.Add(int64(2 * time.Second))
	}
	var a Subsystem = ss
	if st.hangAfterMark {
		a = &markHook{Subsystem: ss, after: sync.OnceFunc(hang)}
	} else {
		hang()
	}
	opened := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := Open(opts, mv, []Volume{{Name: "a", Subsystem: a, Size: leaseRigSize}, {Name: "b", Subsystem: ss, Size: leaseRigSize}})
		opened <- err
	}()
	select {
	case err = <-opened:
	case <-time.After(bound):
		release()
		t.Fatalf("%s: the start has not ended %s after it began, the timer's lease hung:\n%s", st.name, bound, logs.String())
	}
	took := time.Since(start)
	after, rerr := os.ReadFile(filepath.Join(state, "pairs.json"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	return err, took, before, after, logs.String()
}

// TestAStartWhoseMarkersWaitForAHungLeaseFailsNamingIt: each start that
// stamps a marker before it serves, the timer's lease hung, fails within
// a bounded time (the wait for a save, and a margin) with the lease's
// error, the pair state on disk as the last run left it.
func TestAStartWhoseMarkersWaitForAHungLeaseFailsNamingIt(t *testing.T) {
	suspendedA := []*Pair{{Volume: "a", Subsystem: "s1", State: Suspended, Size: leaseRigSize, Since: 1}, duplexAB(leaseRigSize)[1]}
	deletedA := []*Pair{{Volume: "a", Subsystem: "s1", State: Suspended, Size: leaseRigSize, Since: 1, Deleted: true}, duplexAB(leaseRigSize)[1]}
	pendingA := []*Pair{{Volume: "a", Subsystem: "s1", State: Pending, Size: leaseRigSize, CopyTotal: leaseRigSize}, duplexAB(leaseRigSize)[1]}
	for _, st := range []hungStart{
		{name: "a suspended, its suspension announced again", clean: true, pairs: suspendedA},
		{name: "a deleted, its deletion announced again", clean: true, pairs: deletedA},
		{name: "a new pair, its first copy", clean: true, pairs: duplexAB(leaseRigSize)[1:]},
		{name: "a pending, its copy continued", clean: true, pairs: pendingA},
		{name: "an unclean stop without a log, every pair suspended for its resync", clean: false, pairs: duplexAB(leaseRigSize)},
		{name: "an unclean stop, a's logged region recovered", clean: false, pairs: duplexAB(leaseRigSize),
			marked: map[string][][2]int64{"a": {{recoveredAt, 4096}}}},
		{name: "an unclean stop, a's logged region recovered, its copy waiting", clean: false, pairs: duplexAB(leaseRigSize),
			marked: map[string][][2]int64{"a": {{recoveredAt, 4096}}}, hangAfterMark: true},
	} {
		t.Run(st.name, func(t *testing.T) {
			const saveWait = 200 * time.Millisecond
			err, took, before, after, logs := openWithLeaseHung(t, st, 10*time.Second)
			t.Logf("the start took %s: %v", took.Round(time.Millisecond), err)
			var lh *timer.LeaseHungError
			if !errors.As(err, &lh) {
				t.Errorf("the start, the timer's lease hung: %v, want the lease's error\n%s", err, logs)
			}
			if bound := 2*saveWait + 2*time.Second; took > bound {
				t.Errorf("the start took %s to fail, want at most %s (the wait for a save, and a margin)", took, bound)
			}
			if string(before) != string(after) {
				t.Errorf("the start that failed saved the pair state:\n%s\nthen\n%s", before, after)
			}
		})
	}
}
