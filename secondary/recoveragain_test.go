package secondary

import (
	"bytes"
	"testing"
	"time"

	"duplex/apply"
	"duplex/disk"
	"duplex/recordset"
)

// fencedWithGroups applies groups 1..n, each writing its own region, in a
// new directory keeping history, and fences the secondary for recover
// --at; it returns the directory and the history's config, the secondary
// closed.
func fencedWithGroups(t *testing.T, n int) (string, HistoryConfig) {
	t.Helper()
	dir := t.TempDir()
	fillVolume(t, dir)
	hist := historyOf(dir)
	r := openGateRigWith(t, dir, nil, hist)
	for k := uint64(1); k <= uint64(n); k++ {
		r.sendSet(t, k, []recordset.Update{{Volume: "vol1", Kind: recordset.KindWrite, Offset: k * regionBytes, Length: regionBytes,
			Data: bytes.Repeat([]byte{byte(k)}, regionBytes)}})
	}
	waitGate(t, "every group applied", func() bool { return r.sec.Stats().Group == uint64(n) })
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	r.close(t)
	return dir, hist
}

// within runs f and fails the test if it has not returned within d: a
// call that hangs is a failure, not a test that times out with no word of
// which call it was.
func within[T any](t *testing.T, what string, d time.Duration, f func() (T, error)) (T, error) {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		var zero T
		return zero, nil
	}
}

// A recover --at that fails part-way (the history's read fails, as a
// failing disk does) names its point in the state file first, so that run
// again it finishes taking the volumes there: RecoverTo says a retry
// works. In the same process it hung: the failed run moved the applied
// group back, not the last group handed to the applier, and the next
// RecoverTo (or UndoRanges, which the site asks first) waited for ever for
// the applier to apply a group it had been handed long before.
func TestRecoverToAgainInTheSameProcess(t *testing.T) {
	const n = 5
	dir, hist := fencedWithGroups(t, n)
	inj := disk.NewInjector(nil)
	sec, v := openStoppedFS(t, dir, hist, inj)
	// Closed at the end, not deferred: Close waits for a call that hangs.
	defer v.Close()
	inj.Inject(disk.Fault{Op: disk.OpRead, Under: hist.Dir, Skip: 4})
	if _, err := sec.RecoverTo(int64(time.Millisecond)); err == nil {
		t.Fatal("the history's read fault did not stop the first recovery")
	}
	inj.Clear()

	if _, err := within(t, "UndoRanges after a failed RecoverTo", 10*time.Second, func() (int, error) {
		rs, err := sec.UndoRanges(int64(3 * time.Millisecond))
		return len(rs), err
	}); err != nil {
		t.Logf("UndoRanges after a failed RecoverTo: %v", err)
	}
	st, err := within(t, "RecoverTo after a failed RecoverTo", 10*time.Second, func() (apply.State, error) {
		return sec.RecoverTo(int64(3 * time.Millisecond))
	})
	if err != nil {
		t.Fatalf("RecoverTo run again after a failed one: %v", err)
	}
	if got, want := regions(t, v, n), groupRegions(st.Group, n); !bytes.Equal(got, want) {
		t.Fatalf("run again: at group %d, regions of groups 1..%d hold % x, want % x", st.Group, n, got, want)
	}

	// And once more, further back, after one that succeeded.
	st, err = within(t, "RecoverTo after a RecoverTo", 10*time.Second, func() (apply.State, error) {
		return sec.RecoverTo(int64(time.Millisecond))
	})
	if err != nil {
		t.Fatalf("RecoverTo further back after one that succeeded: %v", err)
	}
	if st.Group != 1 {
		t.Errorf("RecoverTo group 1's time reached group %d", st.Group)
	}
	if got, want := regions(t, v, n), groupRegions(st.Group, n); !bytes.Equal(got, want) {
		t.Fatalf("further back: at group %d, regions of groups 1..%d hold % x, want % x", st.Group, n, got, want)
	}
	if err := sec.Close(); err != nil {
		t.Fatal(err)
	}
}
