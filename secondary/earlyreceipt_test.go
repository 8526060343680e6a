package secondary

import (
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/disk"
	"duplex/transport"
)

// stallJournalSync is a file system whose journal segments' fsync waits,
// once armed, until released: a slow disk under the group being journaled.
type stallJournalSync struct {
	disk.FS
	mu       sync.Mutex
	armed    bool
	entered  chan struct{}
	released chan struct{}
}

func (s *stallJournalSync) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	f, err := s.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, ".seg") {
		return f, err
	}
	return &stallSyncFile{File: f, fs: s}, nil
}

type stallSyncFile struct {
	disk.File
	fs *stallJournalSync
}

func (f *stallSyncFile) Sync() error {
	f.fs.mu.Lock()
	armed := f.fs.armed
	f.fs.armed = false
	f.fs.mu.Unlock()
	if armed {
		close(f.fs.entered)
		<-f.fs.released
	}
	return f.File.Sync()
}

// pastGroup1 links a primary to r and has its group 1 journaled and
// acknowledged: the group that names the primary process in the journal.
func (r *storageRig) pastGroup1() *link {
	r.t.Helper()
	l, _, reason := r.connect()
	if reason != "" {
		r.t.Fatal(reason)
	}
	l.send(1, 0, 1)
	if g, reason := l.journaled(1); g != 1 {
		r.t.Fatalf("group 1 not acknowledged: acked %d, %q", g, reason)
	}
	return l
}

// stallGroup2 sends group 2 on l and returns once its journal fsync waits
// on s, until release is called (at the test's end at the latest).
func (s *stallJournalSync) stallGroup2(t *testing.T, l *link) (release func()) {
	t.Helper()
	s.mu.Lock()
	s.armed = true
	s.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { close(s.released) }) }
	t.Cleanup(release)
	l.send(2, 4096, 2)
	select {
	case <-s.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("group 2 not journaled within 30s")
	}
	return release
}

// The primary hears that a record set arrived before its group is
// journaled: it counts what it sent against its window (mover.Config.Window)
// until the secondary says it received it, and a receipt sent only after the
// journal's fsync had it send nothing while the secondary wrote, so that
// the link and the journal took turns and the disk was idle half the time.
// The group itself is acknowledged only once the fsync returned.
func TestReceiptBeforeTheGroupIsJournaled(t *testing.T) {
	fsys := &stallJournalSync{FS: disk.OS, entered: make(chan struct{}), released: make(chan struct{})}
	r := newStorageRig(t, fsys)
	// The groups after the first are journaled as a batch, which is what
	// a sustained stream makes.
	l := r.pastGroup1()
	release := fsys.stallGroup2(t, l)
	for {
		typ, body := l.recv()
		if typ != transport.TypeAck {
			t.Fatalf("frame type %d while group 2 is journaled, want an acknowledgement", typ)
		}
		p, err := transport.DecodePosition(body)
		if err != nil {
			t.Fatal(err)
		}
		if p.Group >= 2 {
			t.Fatalf("group %d acknowledged while its journal fsync has not returned", p.Group)
		}
		if p.Received["ss1"] >= 2 {
			break
		}
	}
	release()
	if g, reason := l.journaled(2); g != 2 {
		t.Fatalf("group 2 not acknowledged after its fsync: acked %d, %q", g, reason)
	}
}
