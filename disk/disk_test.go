package disk

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestInjectorFailsNthOperationUntilCleared(t *testing.T) {
	dir := t.TempDir()
	in := NewInjector(nil)
	in.Inject(Fault{Op: OpWrite, Under: dir, Skip: 2, Err: ENOSPC})
	f, err := in.OpenFile(filepath.Join(dir, "f"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := range 4 {
		_, err := f.WriteAt([]byte("x"), int64(i))
		if got, want := err != nil, i >= 2; got != want {
			t.Fatalf("write %d: err %v, want failure %v", i, err, want)
		}
		if err != nil && !errors.Is(err, ENOSPC) {
			t.Fatalf("write %d: %v, want ENOSPC", i, err)
		}
	}
	if !IsFull(func() error { _, err := f.Write([]byte("y")); return err }()) {
		t.Fatal("a write to a full disk is not reported as full")
	}
	if got := in.Injected(OpWrite); got != 3 {
		t.Fatalf("Injected(OpWrite) = %d, want 3", got)
	}
	in.Clear()
	if _, err := f.WriteAt([]byte("z"), 4); err != nil {
		t.Fatalf("write after Clear: %v", err)
	}
}

func TestInjectorOnceAndUnder(t *testing.T) {
	dir := t.TempDir()
	in := NewInjector(nil)
	in.Inject(Fault{Op: OpSync, Under: filepath.Join(dir, "a"), Once: true})
	a, err := in.OpenFile(filepath.Join(dir, "a"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := in.OpenFile(filepath.Join(dir, "b"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Sync(); err != nil {
		t.Fatalf("fsync of a path outside the fault: %v", err)
	}
	if err := a.Sync(); !errors.Is(err, EIO) {
		t.Fatalf("first fsync: %v, want EIO", err)
	}
	if err := a.Sync(); err != nil {
		t.Fatalf("second fsync of a Once fault: %v", err)
	}
}

// A failed atomic write leaves the old content whole and no temporary file.
func TestWriteFileAtomicKeepsOldContentOnFault(t *testing.T) {
	for _, op := range []Op{OpCreate, OpWrite, OpSync, OpRename} {
		t.Run(op.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.json")
			if err := WriteFileAtomic(OS, path, []byte("old")); err != nil {
				t.Fatal(err)
			}
			in := NewInjector(nil)
			in.Inject(Fault{Op: op, Under: dir, Err: ENOSPC})
			if err := WriteFileAtomic(in, path, []byte("new")); !IsFull(err) {
				t.Fatalf("WriteFileAtomic with a failing %s: %v, want ENOSPC", op, err)
			}
			in.Clear()
			got, err := ReadFile(in, path)
			if err != nil || string(got) != "old" {
				t.Fatalf("after the fault: %q, %v; want the old content", got, err)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Fatalf("directory holds %d entries after a failed write, want only the file", len(entries))
			}
		})
	}
}

func TestAvailable(t *testing.T) {
	n, err := OS.Available(t.TempDir())
	if err != nil || n <= 0 {
		t.Fatalf("Available = %d, %v", n, err)
	}
}
