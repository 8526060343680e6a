package actlog

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"duplex/disk"
)

// TestAHungLogWriteHoldsOnlyFreshMarksAndIsAbandoned: the disk of the log
// stops answering. A write to a region marked on disk goes on; one to a
// fresh region waits, and Waits says how long the log's write has taken
// and that one write waits. Abandon closes the log under the hung write:
// once the disk answers, the waiting mark fails (its write is never
// acknowledged), and the log on disk still marks the region written
// before.
func TestAHungLogWriteHoldsOnlyFreshMarksAndIsAbandoned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "activity.log")
	fsys := disk.NewInjector(nil)
	l, _, err := OpenFS(fsys, path, map[string]int64{"a": 8 << 20}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Mark("a", 0, 4096); err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(held)
		}
	}
	defer release()
	fsys.Inject(disk.Fault{Op: disk.OpWrite, Under: path, Hang: held})
	if err := l.Mark("a", 4096, 4096); err != nil {
		t.Fatalf("a write to a region marked on disk: %v", err)
	}
	marked := make(chan error, 1)
	go func() { marked <- l.Mark("a", 2<<20, 4096) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if d, n := l.Waits(); d > 0 && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			d, n := l.Waits()
			t.Fatalf("Waits: %s, %d writes waiting; want a write of the log under way and one waiting", d, n)
		}
	}
	select {
	case err := <-marked:
		t.Fatalf("the mark of a fresh region returned with the log's disk hung: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	l.Abandon()
	release()
	select {
	case err := <-marked:
		if !errors.Is(err, ErrWrite) {
			t.Errorf("the mark that waited for the abandoned log: %v, want ErrWrite", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the mark that waited for the abandoned log has not returned once the disk answered")
	}
	if d, n := l.Waits(); d != 0 || n != 0 {
		t.Errorf("Waits after the write ended: %s, %d", d, n)
	}
	marks, err := ReadMarks(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][2]int64{{0, 1 << 20}}; !slices.Equal(marks["a"], want) {
		t.Errorf("the log on disk marks %v of a, want %v", marks["a"], want)
	}
}
