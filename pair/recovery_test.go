package pair

import (
	"testing"
)

// recovers says whether the regions recovered at the last open include the
// region of vol at off.
func (r *rig) recovers(vol string, off int64) bool {
	for _, rg := range r.opts.Recovered[vol] {
		if rg[0] <= off && off < rg[0]+rg[1] {
			return true
		}
	}
	return false
}

// The regions a crash recovery copies stay marked in the activity log until
// the secondary has the end of that recovery. Its copies may span several
// groups, which the secondary journals and acknowledges but holds back until
// the last one; a second crash before that must copy the regions again, or
// the secondary holds the volume's unfinished resync open for ever.
func TestRecoveredRegionsStayMarkedUntilTheRecoveryEnds(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.settle()
	r.saveAndClean()
	r.write("a", 2*twinRegion, 4096)
	r.crash()
	if !r.recovers("a", 2*twinRegion) {
		t.Fatalf("first crash: the written region is not recovered: %v", r.opts.Recovered)
	}
	// The recovery's copies are journaled and acknowledged, the group that
	// ends it is not; the manager and the log go on as Run does.
	r.mv.journalHeld()
	r.mg.promote()
	r.saveAndClean()
	r.crash()
	if !r.recovers("a", 2*twinRegion) {
		t.Fatalf("second crash before the secondary had the end of the first recovery: region not recovered again (recovered %v)", r.opts.Recovered)
	}
	// Once the secondary has the end of the recovery, the marks go.
	r.mv.ship()
	r.mg.promote()
	r.saveAndClean()
	r.crash()
	if r.recovers("a", 2*twinRegion) {
		t.Fatalf("crash after the recovery ended at the secondary: the region is still recovered (%v)", r.opts.Recovered)
	}
}
