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

// The periodic save of a linked, idle session does not write the pair state
// every second only because the duplex pairs' consistency times moved with
// the acknowledgements: those wait up to timesSaveEvery, and a restart in
// between finds the older time, which the secondary still holds. Any other
// change, a time that went back, or an operation is written at once.
func TestPeriodicSaveDefersMovingConsistencyTimes(t *testing.T) {
	c := &creates{FS: disk.OS}
	r := newRig(t, 4*twinRegion, 1<<20, "v00", "v01")
	r.opts.FS = c
	r.dir = t.TempDir()
	r.opts.Dir = r.dir
	r.open()
	r.settle()
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}
	stored := r.pair("v00").Consistent
	if stored == 0 {
		t.Fatalf("duplex pair has no consistency time: %+v", r.pair("v00"))
	}
	// Acknowledgements move the times on, as an idle secondary's do.
	c.n.Store(0)
	for range 3 {
		r.write("v00", 0, 4096)
		r.mv.ship()
		r.mg.promote()
		if err := r.mg.saveState(false, true); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.n.Load(); got != 0 {
		t.Fatalf("three periodic saves with only the consistency times moved wrote %d files, want none", got)
	}
	moved := r.pair("v00").Consistent
	if moved <= stored {
		t.Fatalf("consistency time did not move: %d, stored %d", moved, stored)
	}

	// Killed now, the manager comes back with the older time: no later
	// than the secondary holds.
	r.crash()
	if got := r.pair("v00").Consistent; got != stored {
		t.Fatalf("after a restart the pair is consistent as of %d, want the stored %d (acknowledged %d)", got, stored, moved)
	}
	r.settle()
	r.mg.promote()
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}

	// Once timesSaveEvery has passed, the periodic save writes them.
	r.write("v00", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	r.mg.saveMu.Lock()
	r.mg.stateWritten = r.mg.stateWritten.Add(-timesSaveEvery)
	r.mg.saveMu.Unlock()
	c.n.Store(0)
	if err := r.mg.saveState(false, true); err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load(); got != 1 {
		t.Fatalf("a periodic save %v after the last wrote %d files, want the pair state", timesSaveEvery, got)
	}

	// A time that goes back (a resync of another volume holds the
	// secondary behind what it acknowledged) is written at once.
	r.write("v00", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	r.mv.mu.Lock()
	r.mv.recoverable = stored
	r.mv.mu.Unlock()
	r.mg.promote()
	if got := r.pair("v00").Consistent; got != stored {
		t.Fatalf("under the hold the pair is consistent as of %d, want %d", got, stored)
	}
	c.n.Store(0)
	if err := r.mg.saveState(false, true); err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load(); got != 1 {
		t.Fatalf("a periodic save after a consistency time went back wrote %d files, want the pair state", got)
	}
	r.mv.release()

	// Any other change is written at once.
	if err := r.mg.Suspend("v01"); err != nil {
		t.Fatal(err)
	}
	c.n.Store(0)
	r.write("v01", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	if err := r.mg.saveState(false, true); err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load(); got == 0 {
		t.Fatalf("a periodic save after a write to a suspended pair wrote nothing, want its bitmap")
	}
}

// BenchmarkPeriodicSave1024 is the pair manager's once-a-second save in a
// linked, idle session of 1,024 duplex pairs, whose consistency times move
// with every acknowledgement: every-second writes the state each time (the
// save before timesSaveEvery), lazy is the periodic save now, which writes
// it once every timesSaveEvery.
func BenchmarkPeriodicSave1024(b *testing.B) {
	var names []string
	for i := range 1024 {
		names = append(names, fmt.Sprintf("v%04d", i))
	}
	for _, lazy := range []bool{false, true} {
		name := "every-second"
		if lazy {
			name = "lazy"
		}
		b.Run(name, func(b *testing.B) {
			r := newRig(b, twinRegion, 1<<30, names...)
			// Duplex from the start: settling 1,024 copies through the
			// twins is not what is measured.
			r.mg.mu.Lock()
			for _, p := range r.mg.pairs {
				p.State, p.FirstCopy, p.CopyEnd = Duplex, false, 1
				delete(r.mg.copies, p.Volume)
			}
			r.mg.mu.Unlock()
			r.mv.ship()
			r.mg.promote()
			if err := r.mg.save(false); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				r.write("v0000", 0, 4096)
				r.mv.ship()
				r.mg.promote()
				if err := r.mg.saveState(false, lazy); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
