package actlog

import (
	"path/filepath"
	"testing"
	"time"

	"duplex/disk"
)

// A mark whose write fails must not count as on disk: the write it guards
// fails, and the next write to the region marks it again. Otherwise that next
// write is acknowledged with no durable mark, and a crash loses it from the
// recovery copy. A failed mark leaves no count behind either, so the region
// can be cleaned.
func TestFailedMarkIsRetried(t *testing.T) {
	for _, op := range []disk.Op{disk.OpWrite, disk.OpSync} {
		t.Run(op.String(), func(t *testing.T) {
			defer func(d time.Duration) { Idle = d }(Idle)
			Idle = 0
			l, in, _ := openFaulted(t, op, disk.EIO)
			if err := l.Mark("a", 3<<20, 4096); err == nil {
				t.Fatalf("Mark succeeded although the log's %s failed", op)
			}
			if in.Injected(op) != 1 {
				t.Fatalf("the %s fault did not fire", op)
			}
			syncs := l.Syncs()
			if err := l.Mark("a", 3<<20, 4096); err != nil {
				t.Fatalf("Mark after the fault cleared: %v", err)
			}
			if l.Syncs() == syncs {
				t.Fatal("the second Mark of a region whose first mark failed did not write the log")
			}
			// The first Mark's count was undone: one Done makes the region clean.
			l.Wrote("a", 3<<20, 4096)
			l.Done("a", 3<<20, 4096)
			if err := l.Clean(); err != nil {
				t.Fatal(err)
			}
			if n := l.Marked(); n != 0 {
				t.Fatalf("%d regions still marked after every update was acknowledged: the failed Mark leaked a count", n)
			}
		})
	}
}

// After a failed mark and a successful retry, a crash finds the region.
func TestMarkRetriedAfterWriteFailureSurvivesCrash(t *testing.T) {
	l, _, path := openFaulted(t, disk.OpWrite, disk.ENOSPC)
	if err := l.Mark("a", 5<<20, 4096); !disk.IsFull(err) {
		t.Fatalf("Mark on a full disk: %v, want ENOSPC", err)
	}
	if err := l.Mark("a", 5<<20, 4096); err != nil {
		t.Fatalf("Mark after space was freed: %v", err)
	}
	// Crash: no Close.
	_, prev, err := Open(path, faultedSizes, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	if got := prev["a"]; len(got) != 1 || got[0] != [2]int64{5 << 20, 1 << 20} {
		t.Fatalf("after the crash the log holds %v for a, want region 5", got)
	}
}

// A sticky mark (a write of a suspended pair) whose write failed is retried
// the same way.
func TestFailedStickIsRetried(t *testing.T) {
	l, _, path := openFaulted(t, disk.OpWrite, disk.EIO)
	if err := l.Stick("a", 2<<20, 4096); err == nil {
		t.Fatal("Stick succeeded although the log's write failed")
	}
	if err := l.Stick("a", 2<<20, 4096); err != nil {
		t.Fatal(err)
	}
	_, prev, err := Open(path, faultedSizes, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	if got := prev["a"]; len(got) != 1 || got[0] != [2]int64{2 << 20, 1 << 20} {
		t.Fatalf("after the crash the log holds %v for a, want region 2", got)
	}
}

// faultedSizes are the volumes of openFaulted's log: a, of 8 MiB.
var faultedSizes = map[string]int64{"a": 8 << 20}

// openFaulted opens a log of faultedSizes at a path it returns, and makes
// its next op fail with err, once.
func openFaulted(t *testing.T, op disk.Op, err error) (*Log, *disk.Injector, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "al")
	in := disk.NewInjector(nil)
	l, _, oerr := OpenFS(in, path, faultedSizes, DefaultRegion)
	if oerr != nil {
		t.Fatal(oerr)
	}
	in.Inject(disk.Fault{Op: op, Under: dir, Err: err, Once: true})
	return l, in, path
}
