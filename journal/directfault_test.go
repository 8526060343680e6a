package journal

import (
	"bytes"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"testing"

	"duplex/disk"
)

// tornFS is the operating system's file system whose files are still
// operating-system files (the journal writes them directly where it can),
// but whose armed WriteAt writes only the first keep bytes of its buffer
// and fails with err: a device that took part of a direct write.
type tornFS struct {
	disk.FS
	mu     sync.Mutex
	skip   int // WriteAt calls to let through before the armed one
	armed  bool
	keep   int
	err    error
	failed int
}

type tornFile struct {
	*os.File
	fs *tornFS
}

func (t *tornFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &tornFile{File: f, fs: t}, nil
}

func (t *tornFS) arm(skip, keep int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.skip, t.keep, t.err, t.armed = skip, keep, err, true
}

func (f *tornFile) WriteAt(p []byte, off int64) (int, error) {
	t := f.fs
	t.mu.Lock()
	fire := t.armed && t.skip == 0
	if t.armed && t.skip > 0 {
		t.skip--
	}
	if fire {
		t.armed = false
		t.failed++
	}
	keep, err := min(t.keep, len(p)), t.err
	t.mu.Unlock()
	if !fire {
		return f.File.WriteAt(p, off)
	}
	n, werr := f.File.WriteAt(p[:keep], off)
	if werr != nil {
		return n, werr
	}
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: err}
}

// TestDirectFailedWriteKeepsSyncedRecords fails a direct write part way,
// with part of it on disk: the block that holds the end of the synced
// records, which every direct write rewrites, is then written and the rest
// is not. The journal must refuse further writes, leave the synced records
// as they were, and, reopened, hold every record written before the failed
// one and go on writing directly from the right bytes.
func TestDirectFailedWriteKeepsSyncedRecords(t *testing.T) {
	probe := t.TempDir()
	if !directSupported(t, probe) {
		t.Skipf("%s takes no direct writes", probe)
	}
	big := maxDirectChunk + 3*directAlign + 100 // two direct writes
	for _, tc := range []struct {
		name       string
		size       int   // of the record whose write fails
		skip, keep int   // WriteAt calls that succeed first; bytes the failing one writes
		err        error // what it returns
		segSize    int64 // 0: one segment; 13900: record 8 starts the second
	}{
		{"nothing written", 3000, 0, 0, syscall.EIO, 0},
		{"tail block written", 3 * directAlign, 0, directAlign, syscall.EIO, 0},
		{"all but the last block", 3 * directAlign, 0, 3 * directAlign, syscall.ENOSPC, 0},
		{"second chunk of a large record fails", big, 1, 0, syscall.EIO, 0},
		{"second chunk written in part", big, 1, 2 * directAlign, syscall.ENOSPC, 0},
		// Records 1-7 take 13928 bytes: 8 goes to a new segment, after the
		// old one is cut back and synced.
		{"new segment written in part", 3 * directAlign, 0, directAlign, syscall.EIO, 13900},
		{"new segment not written", 100, 0, 0, syscall.ENOSPC, 13900},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tfs := &tornFS{FS: disk.OS}
			opts := Options{FS: tfs, SegmentSize: 1 << 30, MaxRecord: 16 << 20}
			if tc.segSize > 0 {
				opts.SegmentSize = tc.segSize
			}
			j := openT(t, dir, opts)
			data := func(i uint64, n int) []byte {
				b := make([]byte, n)
				for k := range b {
					b[k] = byte(i*31 + uint64(k)*3 + 1)
				}
				return b
			}
			sizes := map[uint64]int{}
			add := func(j *Journal, i uint64, n int) error {
				sizes[i] = n
				return j.Append(i, data(i, n))
			}
			for i := uint64(1); i <= 6; i++ {
				if err := add(j, i, 1000+int(i)*333); err != nil {
					t.Fatal(err)
				}
			}
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			if !j.direct {
				t.Fatal("the journal does not write directly through tornFS")
			}
			// One more, written but not synced: still whole on disk.
			if err := add(j, 7, 777); err != nil {
				t.Fatal(err)
			}
			if j.segs[0].size%directAlign == 0 {
				t.Fatalf("records end at %d, on a block boundary: no tail block to rewrite", j.segs[0].size)
			}
			path := segFiles(t, dir)[0]
			end := j.segs[0].size
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			before = before[:end]

			tfs.arm(tc.skip, tc.keep, tc.err)
			err = add(j, 8, tc.size)
			if err == nil || tfs.failed != 1 {
				t.Fatalf("Append with a failing write: %v (%d failed)", err, tfs.failed)
			}
			if segs := segFiles(t, dir); len(segs) != 1 {
				t.Fatalf("after the failed write: segments %v, want only the first", segs)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after, before) {
				t.Fatalf("after the failed write the segment is %d bytes, want its %d bytes of records unchanged", len(after), len(before))
			}
			if err := add(j, 8, 10); err == nil {
				t.Fatal("Append after a failed write succeeded")
			}
			if err := j.Sync(); err == nil {
				t.Fatal("Sync after a failed write succeeded")
			}
			j.Close()

			j = openT(t, dir, opts)
			if !j.direct || j.LastIndex() != 7 {
				t.Fatalf("reopened: direct %v, LastIndex %d, want direct through 7", j.direct, j.LastIndex())
			}
			for i := uint64(8); i <= 10; i++ {
				if err := add(j, i, []int{tc.size, 5, 4100}[i-8]); err != nil {
					t.Fatal(err)
				}
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j = openT(t, dir, opts)
			defer j.Close()
			next := uint64(1)
			err = j.Replay(0, func(index uint64, b []byte) error {
				if index != next || !bytes.Equal(b, data(index, sizes[index])) {
					t.Fatalf("replayed record %d (%d bytes), want %d (%d bytes)", index, len(b), next, sizes[next])
				}
				next++
				return nil
			})
			if err != nil || next != 11 {
				t.Fatalf("replay: %v, through %d, want 10", err, next-1)
			}
			if segs := segFiles(t, dir); tc.segSize > 0 && len(segs) != 2 {
				t.Fatalf("segments %v, want record 8 to start the second", segs)
			}
		})
	}
}
