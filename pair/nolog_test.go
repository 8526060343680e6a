package pair

import (
	"testing"

	"duplex/actlog"
	"duplex/bitmap"
	"duplex/recordset"
	"duplex/sidefile"
)

// loseSidefile discards what the subsystem holds, as a kill -9 does, and
// returns it.
func (r *rig) loseSidefile() []recordset.Update {
	r.ss.mu.Lock()
	lost := r.ss.side.Drain()
	r.ss.mu.Unlock()
	for _, u := range lost {
		r.ss.side.Release(sidefile.Cost(int(u.Length)))
	}
	return lost
}

// TestRunWithoutActivityLogThenCrashCopiesItsWrites: a primary whose
// activity log cannot be opened runs without one (every write unmarked),
// copying everything after an unclean stop. If it is killed in turn and the
// next start opens the log again (the fault was passing: EIO, a file left
// with the wrong owner), the log holds the marks of the run before the one
// that was killed, not of its writes. Its acknowledged writes still in the
// sidefile at the kill must be copied all the same (a full copy, as without
// a log), not only the stale marks: otherwise the secondary never gets them.
func TestRunWithoutActivityLogThenCrashCopiesItsWrites(t *testing.T) {
	// Four regions of the activity log: the stale mark covers one.
	r := newRig(t, 4*actlog.DefaultRegion, 8<<20, "a")
	r.settle()
	r.saveAndClean()
	r.write("a", 0, 4096) // marked in the log, never shipped
	r.loseSidefile()

	// kill -9; the restarted primary cannot open its activity log.
	r.ss.mu.Lock()
	r.ss.tracking, r.ss.al = map[string]*bitmap.Bitmap{}, nil
	r.ss.mu.Unlock()
	r.mv.mu.Lock()
	r.mv.al = nil
	r.mv.mu.Unlock()
	r.opts.ActivityLog, r.opts.Recovered = nil, nil
	r.open()
	r.mg.autoSuspend() // the link is up: the full resync starts, its room checked
	if p := r.pair("a"); p.State != Pending {
		t.Fatalf("setup: pair %+v once the link is up, want its full resync started", p)
	}
	r.settle() // the full copy, shipped: duplex again
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}
	const lostAt = 2 * actlog.DefaultRegion
	r.write("a", lostAt, 4096) // acknowledged, held in the sidefile only
	r.loseSidefile()

	// kill -9; this time the log opens, with the first run's marks.
	r.ss.mu.Lock()
	r.ss.copies = nil
	r.ss.mu.Unlock()
	r.crash()
	copied := false
	r.ss.mu.Lock()
	for _, u := range r.ss.copies {
		if int64(u.Offset) <= lostAt && lostAt < int64(u.Offset+u.Length) {
			copied = true
		}
	}
	r.ss.mu.Unlock()
	if !copied && !marked(r.pendingRegions("a"), lostAt) {
		t.Fatalf("after a run without activity log was killed, the restart copies only the stale marks %v (pair %s): "+
			"the write at %d acknowledged in that run, lost with its sidefile, never reaches the secondary",
			r.opts.Recovered["a"], r.pair("a").State, lostAt)
	}
}
