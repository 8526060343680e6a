package journal

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"duplex/disk"
)

// holdFS holds the next Remove, or SyncDir, once armed, after the file
// system has done it and before it returns (with fail, if set, instead of
// its result): a Release part-way through an operation whose effect is
// already there.
type holdFS struct {
	disk.FS
	op      disk.Op // disk.OpRemove or disk.OpSyncDir
	fail    error
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	let     chan struct{}
}

func newHoldFS(op disk.Op, fail error) *holdFS {
	return &holdFS{FS: disk.OS, op: op, fail: fail, entered: make(chan struct{}), let: make(chan struct{})}
}

func (h *holdFS) arm() {
	h.mu.Lock()
	h.armed = true
	h.mu.Unlock()
}

func (h *holdFS) hold(op disk.Op, err error) error {
	h.mu.Lock()
	held := h.armed && h.op == op
	if held {
		h.armed = false
	}
	h.mu.Unlock()
	if !held {
		return err
	}
	close(h.entered)
	<-h.let
	if h.fail != nil {
		return h.fail
	}
	return err
}

func (h *holdFS) Remove(name string) error {
	return h.hold(disk.OpRemove, h.FS.Remove(name))
}

func (h *holdFS) SyncDir(dir string) error {
	return h.hold(disk.OpSyncDir, h.FS.SyncDir(dir))
}

// releaseHeld opens a journal in dir on a file system that holds op (and
// then fails it with fail, if set), with records 1 to 40 synced in small
// segments, and starts Release(20). It returns once Release is held in op,
// its effect done; Release's result comes on the channel once fsys.let is
// closed. The journal is closed at the end of the test.
func releaseHeld(t *testing.T, dir string, op disk.Op, fail error) (*Journal, *holdFS, <-chan error) {
	t.Helper()
	fsys := newHoldFS(op, fail)
	j := openT(t, dir, Options{SegmentSize: 150, FS: fsys})
	t.Cleanup(func() { j.Close() })
	appendRange(t, j, 1, 40)
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	fsys.arm()
	released := make(chan error, 1)
	go func() { released <- j.Release(20) }()
	<-fsys.entered
	return j, fsys, released
}

// A reader that finds a segment gone must be able to tell it was
// released, by FirstIndex being past it (history's read views do, and call
// such a point outside the window rather than fail): FirstIndex never
// names a record whose segment file Release has removed, even while the
// removal (tens of milliseconds on a file system that discards) is under
// way, and a Replay begun then does not fail on the file that went.
func TestFirstIndexNeverNamesARemovedSegment(t *testing.T) {
	dir := t.TempDir()
	j, fsys, released := releaseHeld(t, dir, disk.OpRemove, nil)

	first := j.FirstIndex()
	_, statErr := os.Stat(filepath.Join(dir, segmentName(first)))
	var got []rec
	replayErr := j.Replay(0, func(index uint64, data []byte) error {
		got = append(got, rec{index, data})
		return nil
	})
	close(fsys.let)
	if err := <-released; err != nil {
		t.Fatalf("Release: %v", err)
	}
	if statErr != nil {
		t.Fatalf("FirstIndex %d while Release removes segment 1, whose file is gone: %v", first, statErr)
	}
	if replayErr != nil {
		t.Fatalf("Replay begun while Release removes segment 1, with FirstIndex %d: %v", first, replayErr)
	}
	wantRange(t, got, first, 40)
}

// A Release whose removal of a segment fails leaves the segment held, and
// FirstIndex at it; a later Release removes it, and no hole is left for
// Open to call corruption.
// A segment kept as the spare leaves by a rename, which fails the same way.
func TestReleaseWhoseRemovalFailsKeepsTheSegment(t *testing.T) {
	for _, c := range []struct {
		op   disk.Op
		free int64 // room for a spare, or not
	}{{disk.OpRemove, 0}, {disk.OpRename, 1 << 40}} {
		t.Run(c.op.String(), func(t *testing.T) { releaseFails(t, c.op, c.free) })
	}
}

func releaseFails(t *testing.T, op disk.Op, free int64) {
	dir := t.TempDir()
	in := disk.NewInjector(nil)
	j := openT(t, dir, Options{SegmentSize: 150, FS: fakeRoom{in, free}})
	appendRange(t, j, 1, 40)
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	in.Inject(disk.Fault{Op: op, Under: dir, Once: true})
	if err := j.Release(20); !errors.Is(err, disk.EIO) {
		t.Fatalf("Release with a failing removal: %v, want EIO", err)
	}
	if got := j.FirstIndex(); got != 1 {
		t.Fatalf("FirstIndex %d after a failed removal of segment 1, want 1", got)
	}
	if _, err := os.Stat(filepath.Join(dir, segmentName(1))); err != nil {
		t.Fatal(err)
	}
	wantRange(t, replayAll(t, j, 0), 1, 40)
	appendRange(t, j, 41, 45)
	if err := j.Sync(); err != nil {
		t.Fatalf("Sync after a failed removal: %v", err)
	}
	if err := j.Release(20); err != nil {
		t.Fatal(err)
	}
	first := j.FirstIndex()
	if first <= 1 || first > 21 {
		t.Fatalf("FirstIndex %d after Release(20), want in (1, 21]", first)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, dir, Options{SegmentSize: 150})
	defer j.Close()
	wantRange(t, replayAll(t, j, 0), first, 45)
}

// A directory fsync that fails may have dropped what it could not write,
// and a later one, from a new descriptor, need not say so: the Journal
// refuses writes from then on (see Sync). Release fsyncs the directory
// without the Journal's lock, so a Sync that must fsync it too (the first
// after a new segment) must not report success beside a failed one of
// Release's: the new segment's name may be what was dropped.
func TestNoSyncSucceedsBesideAFailedDirectoryFsyncOfRelease(t *testing.T) {
	j, fsys, released := releaseHeld(t, t.TempDir(), disk.OpSyncDir, disk.EIO)

	synced := make(chan error, 1)
	go func() {
		j.mu.Lock()
		n := len(j.segs)
		j.mu.Unlock()
		for i := uint64(41); ; i++ {
			if err := j.Append(i, payload(i)); err != nil {
				synced <- err
				return
			}
			j.mu.Lock()
			rolled := len(j.segs) > n
			j.mu.Unlock()
			if rolled {
				break
			}
		}
		synced <- j.Sync()
	}()
	var syncErr error
	select {
	case syncErr = <-synced:
		close(fsys.let)
	case <-time.After(2 * time.Second):
		// Waiting for Release's fsync, as it should: let it fail.
		close(fsys.let)
		syncErr = <-synced
	}
	if err := <-released; !errors.Is(err, disk.EIO) {
		t.Fatalf("Release with a failing directory fsync: %v, want EIO", err)
	}
	if syncErr == nil {
		t.Fatal("a Sync that fsynced the directory for a new segment succeeded beside Release's failed fsync of it")
	}
	if err := j.Sync(); err == nil {
		t.Fatal("Sync after Release's failed directory fsync succeeded")
	}
}
