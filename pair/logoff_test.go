package pair

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/actlog"
	"duplex/disk"
)

// settledOnInjector is a rig whose activity log is on the returned
// injector, its pairs duplex, the log cleaned.
func settledOnInjector(t *testing.T, size int64, names ...string) (*rig, *disk.Injector) {
	t.Helper()
	in := disk.NewInjector(nil)
	r := newRigOn(t, in, size, 8<<20, names...)
	r.settle()
	r.saveAndClean()
	return r, in
}

// pairState returns the pair state on disk.
func (r *rig) pairState() string {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, "pairs.json"))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

// TestLogOffThenTwoCrashesCopyTheWriteMadeWithoutIt: the activity log
// fails while the primary runs and is turned off; a write is acknowledged
// without a mark and lost with the sidefile at a kill -9. The restart
// opens the log again, and copies everything; killed again part-way
// through that copy, before any of it is acknowledged, the next restart
// still copies the lost write's region and the regions already copied.
func TestLogOffThenTwoCrashesCopyTheWriteMadeWithoutIt(t *testing.T) {
	r, in := settledOnInjector(t, 40*twinRegion, "a")
	in.Inject(disk.Fault{Op: disk.OpWrite, Under: r.logPath(), Err: disk.EIO})
	if err := (actlog.WritePath{Log: r.al}).Mark("a", 0, 4096); err != nil || r.al.Off() == nil {
		t.Fatalf("setup: a write, the log failing: %v, log off %v; want it to go on, the log off", err, r.al.Off())
	}
	const lostAt = 30 * twinRegion
	r.write("a", lostAt, 4096) // acknowledged, marked nowhere
	r.loseSidefile()
	in.Clear()

	r.crash() // the log opens again
	r.mg.autoSuspend()
	if p := r.pair("a"); p.State != Pending || !marked(r.pendingRegions("a"), lostAt) {
		t.Fatalf("after the first restart: pair %+v, want its full resync going on with the region at %d", p, lostAt)
	}
	r.mg.copyOne(context.Background()) // part of the copy, captured, not acknowledged
	if p := r.pair("a"); p.Copied == 0 || !marked(r.pendingRegions("a"), lostAt) {
		t.Fatalf("setup: pair %+v, want part of its copy done, the region at %d still to copy", p, lostAt)
	}
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}
	r.loseSidefile()

	r.crash()
	r.mg.autoSuspend()
	for _, off := range []int64{0, 5 * twinRegion, lostAt} {
		if !marked(r.pendingRegions("a"), off) && !r.recovers("a", off) {
			t.Errorf("after a second kill -9 during the full copy: the region at %d is not copied again (pair %+v)", off, r.pair("a"))
		}
	}
	r.settle()
}

// TestAMarkThatFailsAfterTheCleanStopKeepsItClean: the primary stops
// cleanly, its pair state saved as such, and only then does a copy left
// to its mark (its copier stopped, the mark waiting on the log's disk)
// find the log failing, before the log is closed. Its copy fails, its
// region still to copy in the state saved; the state must stay a clean
// stop's, not become a run without log killed, which copies every pair
// in full at the next start.
func TestAMarkThatFailsAfterTheCleanStopKeepsItClean(t *testing.T) {
	r, in := settledOnInjector(t, 4*twinRegion, "a", "b")
	if err := r.mg.Close(true); err != nil {
		t.Fatal(err)
	}
	in.Inject(disk.Fault{Op: disk.OpWrite, Under: r.logPath(), Err: disk.EIO})
	if err := (actlog.WritePath{Log: r.al}).MarkCopy("a", twinRegion, 4096); !errors.Is(err, actlog.ErrWrite) {
		t.Errorf("a copy's mark after the clean stop, the log failing: %v, want it to fail", err)
	}
	if b := r.pairState(); !strings.Contains(b, `"clean":true`) || strings.Contains(b, `"no_activity_log":true`) {
		t.Fatalf("pair state after a clean stop and a late mark that failed: %s, want it still clean, with the log", b)
	}
}

// TestALogKeptAfterAFailedFallbackIsNotRecordedOff: the activity log and
// the pair state both fail for a moment: a write's mark fails, and so
// does the save that would let the run go on without the log, so the
// write fails and the log stays on. Once the disk works again, the log
// is kept and marks every acknowledged write: the state saved next must
// not say the run has no log (status says the log is on, and a kill -9
// would copy every pair in full for nothing).
func TestALogKeptAfterAFailedFallbackIsNotRecordedOff(t *testing.T) {
	r, in := settledOnInjector(t, 4*twinRegion, "a")
	r.opts.FS = in
	r.open() // the pair state on the failing disk too
	in.Inject(disk.Fault{Op: disk.OpWrite, Under: r.dir, Err: disk.EIO})
	if err := (actlog.WritePath{Log: r.al}).Mark("a", 0, 4096); err == nil {
		t.Fatal("setup: a mark, neither the log nor the pair state writable, went on")
	}
	in.Clear()
	if err := (actlog.WritePath{Log: r.al}).Mark("a", 0, 4096); err != nil || r.al.Off() != nil {
		t.Fatalf("a mark, the disk working again: %v, log off %v; want it marked, the log on", err, r.al.Off())
	}
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}
	if b := r.pairState(); strings.Contains(b, `"no_activity_log":true`) {
		t.Fatalf("pair state %s, the log kept: want it not to say the run has no log", b)
	}
}
