package pair

import (
	"context"
	"testing"

	"duplex/actlog"
	"duplex/disk"
)

// TestLogOffThenTwoCrashesCopyTheWriteMadeWithoutIt: the activity log
// fails while the primary runs and is turned off; a write is acknowledged
// without a mark and lost with the sidefile at a kill -9. The restart
// opens the log again, and copies everything; killed again part-way
// through that copy, before any of it is acknowledged, the next restart
// still copies the lost write's region and the regions already copied.
func TestLogOffThenTwoCrashesCopyTheWriteMadeWithoutIt(t *testing.T) {
	in := disk.NewInjector(nil)
	r := newRigOn(t, in, 40*twinRegion, 64<<20, "a")
	r.settle()
	r.saveAndClean()
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
