package journal

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"duplex/disk"
)

// deviceFS is the operating system's file system with a model of the page
// cache in front of the device, as a failed writeback leaves it on Linux.
// What a process writes is in the page cache (the real file), where every
// later process reads it; it reaches the device (a copy kept in memory)
// when written back, at an fsync or before a read that bypasses the cache
// (a file opened with O_DIRECT, which the kernel writes the cached range
// back for first). A failed writeback leaves the pages clean but never
// written: cached readers go on finding them, the device does not hold
// them, and the next fsync succeeds, since the kernel reports the failure
// once. Its files are not operating-system files (no SyscallConn), so the
// journal writes them through the page cache. Locks and kill are
// pageCacheFS's.
type deviceFS struct {
	*pageCacheFS
	mu      sync.Mutex
	device  map[string][]byte
	dirty   map[string]bool
	failing int  // writebacks still to fail
	die     bool // a failing fsync kills its caller (runtime.Goexit) before it returns
}

func newDeviceFS() *deviceFS {
	return &deviceFS{pageCacheFS: newPageCacheFS(), device: map[string][]byte{}, dirty: map[string]bool{}}
}

// failWriteback makes the next n writebacks fail; with die, the fsync that
// fails never returns, as if the process were killed in it.
func (d *deviceFS) failWriteback(n int, die bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failing, d.die = n, die
}

type deviceFile struct {
	disk.File // an *os.File, hidden behind the interface
	fs        *deviceFS
	name      string
	direct    bool
}

func (d *deviceFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	f, err := os.OpenFile(name, flag&^oDirect, perm)
	if err != nil {
		return nil, err
	}
	name = filepath.Clean(name)
	if flag&os.O_TRUNC != 0 {
		d.mu.Lock()
		d.dirty[name] = true
		d.mu.Unlock()
	}
	return &deviceFile{File: f, fs: d, name: name, direct: oDirect != 0 && flag&oDirect != 0}, nil
}

func (d *deviceFS) Remove(name string) error {
	if err := d.pageCacheFS.Remove(name); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.device, filepath.Clean(name))
	delete(d.dirty, filepath.Clean(name))
	return nil
}

// writeback writes f's dirty pages to the device; a failing one leaves
// them clean and unwritten.
func (f *deviceFile) writeback() (failed bool, err error) {
	d := f.fs
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.dirty[f.name] {
		return false, nil
	}
	d.dirty[f.name] = false
	if d.failing > 0 {
		d.failing--
		return true, &os.PathError{Op: "fsync", Path: f.name, Err: disk.EIO}
	}
	b, err := os.ReadFile(f.name)
	if err != nil {
		return false, err
	}
	d.device[f.name] = b
	return false, nil
}

func (f *deviceFile) markDirty() {
	f.fs.mu.Lock()
	f.fs.dirty[f.name] = true
	f.fs.mu.Unlock()
}

func (f *deviceFile) Write(b []byte) (int, error) {
	f.markDirty()
	return f.File.Write(b)
}

func (f *deviceFile) WriteAt(b []byte, off int64) (int, error) {
	f.markDirty()
	return f.File.WriteAt(b, off)
}

func (f *deviceFile) Truncate(size int64) error {
	f.markDirty()
	return f.File.Truncate(size)
}

func (f *deviceFile) Sync() error {
	failed, err := f.writeback()
	if failed {
		f.fs.mu.Lock()
		die := f.fs.die
		f.fs.mu.Unlock()
		if die {
			runtime.Goexit()
		}
	}
	return err
}

// ReadAt reads the device for a file opened with O_DIRECT: the file's size
// is the cached one, and what the device never got reads as zeros.
func (f *deviceFile) ReadAt(b []byte, off int64) (int, error) {
	if !f.direct {
		return f.File.ReadAt(b, off)
	}
	if _, err := f.writeback(); err != nil {
		return 0, err
	}
	st, err := f.File.Stat()
	if err != nil {
		return 0, err
	}
	if off >= st.Size() {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), st.Size()-off))
	clear(b[:n])
	f.fs.mu.Lock()
	if dev := f.fs.device[f.name]; off < int64(len(dev)) {
		copy(b[:n], dev[off:])
	}
	f.fs.mu.Unlock()
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (f *deviceFile) Read(b []byte) (int, error) {
	if f.direct {
		return 0, errors.New("deviceFile: sequential read of a direct file")
	}
	return f.File.Read(b)
}

// TestAKillAfterAFailedSyncLeavesNoRecordItDidNotCover: a process killed
// in (or just after) an fsync that failed never cuts off the records the
// fsync did not cover. Their pages were left clean in the page cache
// without reaching the disk, and the next process, before a reboot, would
// read them as journaled and welcome its primary past them; the primary
// would then let go of groups the disk does not hold. Open must hold only
// what the disk holds: the records before the failed fsync. The others
// were never acknowledged, and the primary sends them again.
func TestAKillAfterAFailedSyncLeavesNoRecordItDidNotCover(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segSize int64
	}{
		{"the active segment's fsync", 0},
		// Segments of one record each: the fsync that fails is the roll's
		// to record 12's segment, of record 11's, new since the last Sync.
		{"a roll's fsync of a new segment", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "j")
			d := newDeviceFS()
			opts := Options{FS: d, SegmentSize: tc.segSize}
			j := openT(t, dir, opts)
			appendRange(t, j, 1, 10)
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			d.failWriteback(1, true)
			died := make(chan struct{})
			go func() {
				defer close(died)
				appendRange(t, j, 11, 12)
				err := j.Sync()
				t.Errorf("Sync returned (%v): the process should have died in an fsync", err)
			}()
			<-died
			d.kill() // j is never closed: its process is gone

			j = openT(t, dir, opts)
			if got := j.LastIndex(); got != 10 {
				t.Fatalf("reopened after a kill in a failed fsync: LastIndex %d, want 10 (the records after it are in the page cache only)", got)
			}
			wantRange(t, replayAll(t, j, 0), 1, 10)
			appendRange(t, j, 11, 12)
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j = openT(t, dir, opts)
			defer j.Close()
			wantRange(t, replayAll(t, j, 0), 1, 12)
		})
	}
}

// TestAFailedWritebackInOpenLeavesNoRecordItDidNotCover: a process killed
// between an Append and its Sync leaves the record in the page cache, and
// Open makes it durable before reporting it (see
// TestRecordsOpenFindsAfterAKillAreDurable). When that writeback fails,
// Open fails; the pages are then clean in the page cache without being on
// the disk, and the next Open, whose fsync succeeds, must not report them.
// Without the failure Open keeps them: the model drops nothing the kernel
// would write.
func TestAFailedWritebackInOpenLeavesNoRecordItDidNotCover(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail bool
		want uint64
	}{
		{"failing", true, 10},
		{"succeeding", false, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "j")
			d := newDeviceFS()
			j := openT(t, dir, Options{FS: d})
			appendRange(t, j, 1, 10)
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			appendRange(t, j, 11, 12)
			d.kill()
			if tc.fail {
				d.failWriteback(1, false)
				if j2, err := Open(dir, Options{FS: d}); err == nil {
					j2.Close()
					t.Fatal("Open succeeded although the writeback of what it recovered failed")
				}
			}
			j = openT(t, dir, Options{FS: d})
			defer j.Close()
			if got := j.LastIndex(); got != tc.want {
				t.Fatalf("LastIndex %d, want %d", got, tc.want)
			}
			wantRange(t, replayAll(t, j, 0), 1, tc.want)
		})
	}
}
