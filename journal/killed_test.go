package journal

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"duplex/disk"
)

// pageCacheFS is the operating system's file system as a process killed
// with kill -9 leaves it: whatever the process wrote is there for the next
// one to read (the page cache, or the device's volatile cache after a direct
// write), but only what an fsync covered survives a power loss after. It
// tracks which files hold writes or truncations no successful Sync covered,
// and which directories hold entries no SyncDir covered. Its files are
// operating-system files, so the journal writes them directly where it can.
// Its locks live in memory, so that kill can let go of them as the death of
// the process holding them would.
type pageCacheFS struct {
	disk.FS
	mu       sync.Mutex
	dirty    map[string]bool // files written since their last fsync
	dirtyDir map[string]bool // directories changed since their last fsync
	locks    map[string]bool
}

func newPageCacheFS() *pageCacheFS {
	return &pageCacheFS{FS: disk.OS, dirty: map[string]bool{}, dirtyDir: map[string]bool{}, locks: map[string]bool{}}
}

type pageCacheFile struct {
	*os.File
	fs *pageCacheFS
}

func (p *pageCacheFS) mark(m map[string]bool, name string, v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m[filepath.Clean(name)] = v
}

func (p *pageCacheFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	_, statErr := os.Stat(name)
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if flag&os.O_CREATE != 0 && errors.Is(statErr, fs.ErrNotExist) {
		p.mark(p.dirtyDir, filepath.Dir(name), true)
	}
	if flag&os.O_TRUNC != 0 {
		p.mark(p.dirty, name, true)
	}
	return &pageCacheFile{File: f, fs: p}, nil
}

func (f *pageCacheFile) Write(b []byte) (int, error) {
	f.fs.mark(f.fs.dirty, f.Name(), true)
	return f.File.Write(b)
}

func (f *pageCacheFile) WriteAt(b []byte, off int64) (int, error) {
	f.fs.mark(f.fs.dirty, f.Name(), true)
	return f.File.WriteAt(b, off)
}

func (f *pageCacheFile) Truncate(size int64) error {
	f.fs.mark(f.fs.dirty, f.Name(), true)
	return f.File.Truncate(size)
}

func (f *pageCacheFile) Sync() error {
	if err := f.File.Sync(); err != nil {
		return err
	}
	f.fs.mark(f.fs.dirty, f.Name(), false)
	return nil
}

func (p *pageCacheFS) Remove(name string) error {
	if err := p.FS.Remove(name); err != nil {
		return err
	}
	p.mark(p.dirtyDir, filepath.Dir(name), true)
	p.mark(p.dirty, name, false)
	return nil
}

func (p *pageCacheFS) Rename(oldpath, newpath string) error {
	if err := p.FS.Rename(oldpath, newpath); err != nil {
		return err
	}
	p.mark(p.dirtyDir, filepath.Dir(oldpath), true)
	p.mark(p.dirtyDir, filepath.Dir(newpath), true)
	return nil
}

func (p *pageCacheFS) SyncDir(dir string) error {
	if err := p.FS.SyncDir(dir); err != nil {
		return err
	}
	p.mark(p.dirtyDir, dir, false)
	return nil
}

type memLock struct {
	p    *pageCacheFS
	name string
}

func (l memLock) Close() error {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	delete(l.p.locks, l.name)
	return nil
}

func (p *pageCacheFS) Lock(name string) (io.Closer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.locks[name] {
		return nil, errors.New("locked")
	}
	p.locks[name] = true
	return memLock{p, name}, nil
}

// kill is kill -9 of the process using p: its locks go, and everything it
// wrote stays where the next process reads it, durable or not.
func (p *pageCacheFS) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.locks)
}

// undurable lists what under dir a power loss would take back: files
// written since their last fsync and directories changed since theirs.
func (p *pageCacheFS) undurable(dir string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir = filepath.Clean(dir)
	var out []string
	for name, d := range p.dirty {
		if d && (name == dir || filepath.Dir(name) == dir) {
			out = append(out, name)
		}
	}
	for name, d := range p.dirtyDir {
		if d && name == dir {
			out = append(out, name+"/")
		}
	}
	sort.Strings(out)
	return out
}

// TestRecordsOpenFindsAfterAKillAreDurable: a process killed between an
// Append and the Sync after it leaves the record where the next process
// reads it (the page cache, or a device's volatile cache after a direct
// write) but not on the disk. Open reports it all the same (LastIndex,
// Replay), and a caller takes what Open reports as journaled: the
// secondary welcomes its primary at the journal's last group, and the
// primary then releases everything up to it, which a power loss after
// would take back from the journal too. Open must make what it recovers
// durable before it returns: the records in the last segment and, if that
// segment was created since the directory was last synced, its name.
func TestRecordsOpenFindsAfterAKillAreDurable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		buffered bool
		roll     bool // the unsynced record 5 starts a new segment
		last     int  // record 5's length
	}{
		// Record 5 ends at 8192, a block boundary: a direct write leaves
		// no zeros after it for Open to cut off (and sync).
		{"direct, ends at a block", false, false, 2080},
		{"direct, zeros after", false, false, 1500},
		{"direct, new segment", false, true, 4064},
		{"buffered", true, false, 1500},
		{"buffered, new segment", true, true, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "j")
			pc := newPageCacheFS()
			opts := Options{FS: pc, Buffered: tc.buffered, SegmentSize: 1 << 20}
			if tc.roll {
				opts.SegmentSize = 6000
			}
			j := openT(t, dir, opts)
			for i := uint64(1); i <= 3; i++ {
				if err := j.Append(i, make([]byte, 1500)); err != nil {
					t.Fatal(err)
				}
			}
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := pc.undurable(dir); len(got) != 0 {
				t.Fatalf("after Sync, not durable: %v", got)
			}
			if err := j.Append(4, make([]byte, 1500)); err != nil {
				t.Fatal(err)
			}
			if err := j.Append(5, make([]byte, tc.last)); err != nil {
				t.Fatal(err)
			}
			if n := len(segFiles(t, dir)); tc.roll != (n == 2) {
				t.Fatalf("%d segments, want a roll: %v", n, tc.roll)
			}
			pc.kill() // j is never closed: its process is gone

			j2, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer j2.Close()
			if j2.LastIndex() != 5 {
				t.Fatalf("reopened after the kill: LastIndex %d, want 5 (the records are in the page cache)", j2.LastIndex())
			}
			if got := pc.undurable(dir); len(got) != 0 {
				t.Fatalf("Open returned, reporting records through %d, with %v not durable: a power loss now takes back records it reported", j2.LastIndex(), got)
			}
		})
	}
}
