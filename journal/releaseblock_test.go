package journal

import (
	"io/fs"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"duplex/disk"
)

// stallFS holds Remove, Rename or SyncDir of the journal's directory, or
// the fsync of its spare, until let is closed, once armed: a file system
// that discards a removed
// segment's blocks as it frees them (ext4 mounted with discard) takes tens
// of milliseconds over one of 64 MiB, and a directory's fsync waits for
// the device's cache flush.
type stallFS struct {
	disk.FS
	op      disk.Op // disk.OpRemove, OpRename, OpSyncDir or OpSync
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	let     chan struct{}
}

func (s *stallFS) stall(op disk.Op) {
	s.mu.Lock()
	armed := s.armed && s.op == op
	if armed {
		s.armed = false
	}
	s.mu.Unlock()
	if armed {
		close(s.entered)
		<-s.let
	}
}

func (s *stallFS) Remove(name string) error {
	s.stall(disk.OpRemove)
	return s.FS.Remove(name)
}

func (s *stallFS) Rename(oldpath, newpath string) error {
	s.stall(disk.OpRename)
	return s.FS.Rename(oldpath, newpath)
}

// OpenFile holds the fsync of the spare, not of a segment, as OpSync.
func (s *stallFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	f, err := s.FS.OpenFile(name, flag, perm)
	if err != nil || filepath.Base(name) != spareName {
		return f, err
	}
	return stallFile{f, s}, nil
}

type stallFile struct {
	disk.File
	s *stallFS
}

func (f stallFile) Datasync() error {
	f.s.stall(disk.OpSync)
	return disk.Datasync(f.File)
}

func (s *stallFS) SyncDir(dir string) error {
	s.stall(disk.OpSyncDir)
	return s.FS.SyncDir(dir)
}

// The secondary appends and syncs each group while its checkpointer
// releases the segments applied: an Append and a Sync must not wait for a
// Release's removal of a segment, or its fsync of the directory, or every
// acknowledgement waits for the disk's discard and flush twice a segment.
// Nor for its rename of one to the spare, nor its zeroing of the spare's
// header.
func TestAppendAndSyncDoNotWaitForRelease(t *testing.T) {
	for _, op := range []disk.Op{disk.OpRemove, disk.OpRename, disk.OpSyncDir, disk.OpSync} {
		t.Run(op.String(), func(t *testing.T) {
			dir := t.TempDir()
			fsys := &stallFS{FS: disk.OS, op: op, entered: make(chan struct{}), let: make(chan struct{})}
			j := openT(t, dir, Options{SegmentSize: 150, FS: fsys})
			// The record after them must not start a segment: the first
			// Sync after a new segment fsyncs the directory, in turn with
			// Release (see Release).
			n := uint64(40)
			appendRange(t, j, 1, n)
			for j.segs[len(j.segs)-1].size+16+int64(len(payload(n+1))) > 150 {
				n++
				appendRange(t, j, n, n)
			}
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			first := j.FirstIndex()
			fsys.mu.Lock()
			fsys.armed = true
			fsys.mu.Unlock()
			released := make(chan error, 1)
			go func() { released <- j.Release(20) }()
			<-fsys.entered

			appended := make(chan error, 1)
			go func() {
				if err := j.Append(n+1, payload(n+1)); err != nil {
					appended <- err
					return
				}
				appended <- j.Sync()
			}()
			select {
			case err := <-appended:
				if err != nil {
					t.Fatalf("Append and Sync during a Release: %v", err)
				}
			case <-time.After(30 * time.Second):
				close(fsys.let)
				<-released
				t.Fatalf("Append and Sync waited for Release's %s", op)
			}
			close(fsys.let)
			if err := <-released; err != nil {
				t.Fatalf("Release: %v", err)
			}
			if got := j.FirstIndex(); got <= first || got > 21 {
				t.Fatalf("FirstIndex %d after Release(20), want in (%d, 21]", got, first)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j = openT(t, dir, Options{SegmentSize: 150})
			defer j.Close()
			wantRange(t, replayAll(t, j, 0), j.FirstIndex(), n+1)
		})
	}
}
