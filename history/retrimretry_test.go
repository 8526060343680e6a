package history

import (
	"testing"
	"time"

	"duplex/disk"
)

// heldOverTheBound opens a Log on inj of MaxBytes 2 MiB, captures 12
// groups (about 7 MiB), and holds the oldest point while a Trim runs: the
// files stay over the bound, the Trim stopped short. It returns the
// hold's release.
func heldOverTheBound(t *testing.T, inj *disk.Injector) (*Log, func()) {
	t.Helper()
	l, err := Open(t.TempDir(), Options{MaxBytes: 2 << 20, FS: inj})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	captureGroups(t, l, 1, 12, 31)
	p, ok := l.Oldest()
	if !ok {
		t.Fatal("no point")
	}
	release, err := l.Hold(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Trim(12); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Stopped(); !ok {
		t.Fatal("the hold stopped no Trim")
	}
	return l, release
}

// retrimFailed is heldOverTheBound with the hold let go while every
// removal fails (until inj.Clear): the Trim run again then failed, and
// its retry waits.
func retrimFailed(t *testing.T) (*Log, *disk.Injector) {
	t.Helper()
	inj := disk.NewInjector(nil)
	l, release := heldOverTheBound(t, inj)
	inj.Inject(disk.Fault{Op: disk.OpRemove})
	release()
	l.retrims.Wait()
	return l, inj
}

// overTheBound says whether l's files are over its bound and the two
// segments it may exceed it by.
func overTheBound(l *Log) bool { return l.Bytes() > l.opts.MaxBytes+2*l.jo.SegmentSize }

// The Trim run again once the last hold goes (a fenced or idle secondary
// makes no checkpoint for hours) may fail: the disk refused the removal
// of a segment for a while. Nothing tried it again: the files stayed over
// their bound until the next checkpoint that trims, which a fenced
// secondary never makes, status saying so meanwhile. It is tried again
// after a backoff until it succeeds.
func TestAFailedRetrimIsTriedAgain(t *testing.T) {
	l, inj := retrimFailed(t)
	st, ok := l.Stopped()
	if !ok || st.Err == nil {
		t.Fatalf("the Trim run again as the hold went, its removals failing: Stopped %+v, %v; want its error", st, ok)
	}
	inj.Clear()
	deadline := time.Now().Add(10 * time.Second)
	for overTheBound(l) {
		if time.Now().After(deadline) {
			st, ok := l.Stopped()
			t.Fatalf("the disk took removals again 10 s ago: the history still holds %d bytes, over its bound of %d; Stopped %+v, %v",
				l.Bytes(), l.opts.MaxBytes, st, ok)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The files shrink as the retry releases them, before it forgets the
	// stopped Trim: until its release is done they may still be over.
	l.retrims.Wait()
	if st, ok := l.Stopped(); ok {
		t.Errorf("trimmed back within the bound, but Stopped still says %+v", st)
	}
}

// A Trim (a checkpoint's) that fails to release the segments while the
// files are over their bound since holds stopped an earlier one must
// leave Stopped saying so, with its error, for the status the secondary
// shows (history_over_limit): the failing Trim forgot the stopped one
// before it released anything, and status said nothing while the files
// stayed over the bound.
func TestAFailedTrimLeavesTheHistorySaidOverItsBound(t *testing.T) {
	l, _ := retrimFailed(t)
	if err := l.Trim(12); err == nil {
		t.Fatal("a Trim whose removals fail succeeded")
	}
	if !overTheBound(l) {
		t.Fatal("the failed Trim left the files within their bound")
	}
	st, ok := l.Stopped()
	if !ok || st.Err == nil {
		t.Errorf("the files are over their bound (%d bytes, bound %d) since a hold stopped a Trim, and the Trim since failed: Stopped %+v, %v; want its error",
			l.Bytes(), l.opts.MaxBytes, st, ok)
	}
}
