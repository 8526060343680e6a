package secondary

import (
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
)

// syncGatedFS is the real disk, except that once armed an fsync of a
// journal segment waits until the gate opens, as an fsync does on a slow
// or failing disk.
type syncGatedFS struct {
	disk.FS
	armed   atomic.Bool
	started chan struct{} // receives once per gated fsync that begins
	gate    chan struct{} // closed: every fsync returns
}

type syncGatedFile struct {
	disk.File
	fs *syncGatedFS
}

func (f *syncGatedFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.Contains(filepath.Dir(name), "journal") {
		return file, err
	}
	return syncGatedFile{File: file, fs: f}, nil
}

func (f syncGatedFile) Sync() error {
	if f.fs.armed.Load() {
		select {
		case f.fs.started <- struct{}{}:
		default:
		}
		<-f.fs.gate
	}
	return f.File.Sync()
}

// TestStatusAnswersDuringASlowJournalFsync: the receiver journals a group,
// and the journal's fsync takes long (a slow or failing disk). Status must
// still answer at once, showing what holds, and must never wait on disk
// I/O: Stats took the lock the receiver holds for the whole write and
// fsync of the group, and the journal's own lock besides, so status (and
// the metrics, and the status page) hung as long as the disk did.
func TestStatusAnswersDuringASlowJournalFsync(t *testing.T) {
	gfs := &syncGatedFS{FS: disk.OS, started: make(chan struct{}, 1), gate: make(chan struct{})}
	var once sync.Once
	open := func() { once.Do(func() { close(gfs.gate) }) }
	defer open()
	r := newLagRig(t, Config{FS: gfs}, nil)
	gfs.armed.Store(true)
	r.send(t, 1, false)
	select {
	case <-gfs.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the receiver never fsynced the journal for group 1")
	}
	if st, ok := statusWithin(r.sec, 10*time.Second); !ok {
		t.Error("status did not answer within 10s while the journal's fsync waited (Stats waits on the disk)")
	} else if st.JournaledGroup != 0 {
		t.Errorf("status says group %d is journaled while its fsync has not returned", st.JournaledGroup)
	}
	views := make(chan struct{})
	go func() { r.sec.Snapshot([]string{"vol1"}); close(views) }()
	select {
	case <-views:
	case <-time.After(10 * time.Second):
		t.Error("the status snapshot did not answer within 10s while the journal's fsync waited")
	}
	open()
	r.waitStats(t, 30*time.Second, func(st Stats) bool { return st.JournaledGroup >= 1 }, "group 1 journaled once the fsync returned")
}

// statusWithin asks sec for its status and waits d for the answer: a
// status that waits on a held disk does not come, and ok is false (its
// goroutine ends once the disk answers).
func statusWithin(sec *Secondary, d time.Duration) (st Stats, ok bool) {
	stats := make(chan Stats, 1)
	go func() { stats <- sec.Stats() }()
	select {
	case st = <-stats:
		return st, true
	case <-time.After(d):
		return Stats{}, false
	}
}
