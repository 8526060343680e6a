package actlog

import (
	"errors"
	"path/filepath"
	"testing"

	"duplex/disk"
)

// TestWritePathFallsBackOnlyOnceRecorded: the log's disk fails under the
// write path. While the fallback cannot record that the run goes on
// without the log, a mark fails, saying both; once it can, that mark
// succeeds, the log is off and says why, and every later mark costs
// nothing, the log neither written nor asked again. The fallback is not
// asked for an error other than a failed write of the log.
func TestWritePathFallsBackOnlyOnceRecorded(t *testing.T) {
	dir := t.TempDir()
	in := disk.NewInjector(nil)
	l, _, err := OpenFS(in, filepath.Join(dir, "al"), faultedSizes, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	in.Inject(disk.Fault{Op: disk.OpSync, Under: dir, Err: disk.ENOSPC})
	w := WritePath{Log: l}
	if err := w.Mark("a", 0, 4096); !errors.Is(err, ErrWrite) {
		t.Fatalf("a mark, the log failing and no fallback: %v, want ErrWrite", err)
	}
	unsaved := errors.New("pair state not saved")
	var asked int
	record := unsaved
	l.SetFallback(func(err error) error {
		asked++
		if !errors.Is(err, ErrWrite) {
			t.Errorf("fallback asked with %v, want the log's failed write", err)
		}
		return record
	})
	if err := w.Mark("nosuch", 0, 4096); err == nil || asked != 0 {
		t.Fatalf("a mark of no volume: %v, the fallback asked %d times, want an error and none", err, asked)
	}
	if err := w.MarkCopy("a", 1<<20, 4096); !errors.Is(err, ErrWrite) || !errors.Is(err, unsaved) {
		t.Fatalf("a mark, the log failing and the fallback not recorded: %v, want both errors", err)
	}
	if l.Off() != nil {
		t.Fatal("the log is off, and nothing recorded that the run goes on without it")
	}
	record = nil
	if err := w.Stick("a", 2<<20, 4096); err != nil {
		t.Fatalf("a mark, the fallback recorded: %v", err)
	}
	if off := l.Off(); !errors.Is(off, disk.ENOSPC) {
		t.Fatalf("the log off because of %v, want the failed fsync's error", off)
	}
	syncs, tries := in.Injected(disk.OpSync), asked
	for _, mark := range []func(string, int64, int64) error{w.Mark, w.MarkCopy, w.Stick, l.Mark} {
		if err := mark("a", 3<<20, 4096); err != nil {
			t.Fatalf("a mark, the log off: %v", err)
		}
	}
	if err := l.Clean(); err != nil {
		t.Fatal(err)
	}
	if in.Injected(disk.OpSync) != syncs || asked != tries {
		t.Fatal("the log, off, was written or its fallback asked again")
	}
	if err := l.Close(); err != nil {
		t.Fatalf("closing the log that is off: %v", err)
	}
}
