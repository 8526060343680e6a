package actlog

import (
	"io/fs"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
)

// gatedFS holds the log's next Sync until released, and says when one is
// held: a slow disk, stopped at the moment a mark is being synced.
type gatedFS struct {
	disk.FS
	armed    atomic.Bool
	entered  chan struct{}
	release  chan struct{}
	released atomic.Bool
}

func newGatedFS() *gatedFS {
	return &gatedFS{FS: disk.OS, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gatedFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	f, err := g.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &gatedFile{File: f, g: g}, nil
}

func (g *gatedFS) open() {
	g.released.Store(true)
	close(g.release)
}

type gatedFile struct {
	disk.File
	g *gatedFS
}

func (f *gatedFile) Sync() error {
	if f.g.armed.CompareAndSwap(true, false) {
		close(f.g.entered)
		<-f.g.release
	}
	return f.File.Sync()
}

// While the log syncs the mark of a fresh region, a write to a region that is
// marked on disk already has nothing to wait for: a random workload entering
// fresh regions (every run after the regions went idle and were cleaned)
// otherwise stalls every write, of every region, once per sync of the log.
// A write to the region being marked must still wait for that sync: its mark
// is not on disk before.
func TestMarkWaitsOnlyForItsOwnRegionsSync(t *testing.T) {
	g := newGatedFS()
	l, _, err := OpenFS(g, filepath.Join(t.TempDir(), "al"), map[string]int64{"a": 16 << 20}, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Mark("a", 0, 4096); err != nil {
		t.Fatal(err)
	}
	g.armed.Store(true)
	fresh := make(chan error, 1)
	go func() { fresh <- l.Mark("a", 5<<20, 4096) }()
	<-g.entered // region 5's mark is being synced, and is held there

	marked := make(chan error, 1)
	go func() { marked <- l.Mark("a", 8192, 4096) }()
	type result struct {
		err   error
		after bool // returned after the held sync was let go
	}
	same := make(chan result, 1)
	go func() {
		err := l.Mark("a", 5<<20+8192, 4096)
		same <- result{err, g.released.Load()}
	}()
	select {
	case err := <-marked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		g.open()
		t.Fatal("a write to a region marked on disk waited for the sync of another region's mark")
	}
	g.open()
	if err := <-fresh; err != nil {
		t.Fatal(err)
	}
	if r := <-same; r.err != nil {
		t.Fatal(r.err)
	} else if !r.after {
		t.Fatal("a write to a region whose mark was being synced returned before that sync ended")
	}
}
