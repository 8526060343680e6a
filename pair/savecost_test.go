package pair

import (
	"fmt"
	"sync/atomic"
	"testing"

	"duplex/disk"
)

// creates counts the files a save creates (each atomic write creates one
// temporary file, then fsyncs it and its directory).
type creates struct {
	disk.FS
	n atomic.Int64
}

func (c *creates) CreateTemp(dir, pattern string) (disk.File, error) {
	c.n.Add(1)
	return c.FS.CreateTemp(dir, pattern)
}

// The work of saving the pair state grows with what changed, not with the
// pairs: a new session of many pairs starts without writing a bitmap per
// pair (a pending pair without one copies everything, as its full bitmap
// says), and a save after one pair's copy progressed writes that bitmap
// alone. Written per pair and fsynced twice each, every save of a session
// of 1,024 pairs cost seconds, and its initial copies crawled.
func TestSaveWritesOnlyBitmapsThatChanged(t *testing.T) {
	var names []string
	for i := range 64 {
		names = append(names, fmt.Sprintf("v%02d", i))
	}
	c := &creates{FS: disk.OS}
	r := newRig(t, 4*twinRegion, 1<<20, names...)
	r.opts.FS = c
	r.dir = t.TempDir()
	r.opts.Dir = r.dir
	r.open()
	if got := c.n.Load(); got > 1 {
		t.Fatalf("opening a session of %d new pairs wrote %d files, want the pair state alone", len(names), got)
	}
	c.n.Store(0)
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load(); got > 1 {
		t.Fatalf("a save with nothing changed wrote %d files, want the pair state alone", got)
	}
	r.mg.copyOne(t.Context())
	c.n.Store(0)
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load(); got > 2 {
		t.Fatalf("a save after one pair's copy progressed wrote %d files, want its bitmap and the pair state", got)
	}
}

// A save that would write the pair state as it is on disk writes nothing:
// a session whose pairs do not change (no acknowledgement moving their
// times: the link down, say) costs no write and fsyncs every second. A
// change is written at once.
func TestSaveSkipsAnUnchangedState(t *testing.T) {
	c := &creates{FS: disk.OS}
	r := newRig(t, 4*twinRegion, 1<<20, "v00", "v01")
	r.opts.FS = c
	r.dir = t.TempDir()
	r.opts.Dir = r.dir
	r.open()
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}
	c.n.Store(0)
	for range 3 {
		if err := r.mg.save(false); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.n.Load(); got != 0 {
		t.Fatalf("three saves of an unchanged pair state wrote %d files, want none", got)
	}
	if err := r.mg.save(true); err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load(); got != 1 {
		t.Fatalf("a save marking the state clean wrote %d files, want the pair state", got)
	}
}
