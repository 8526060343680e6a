package pair

import "testing"

// TestAResumeBeforeACopyIsGivenUpStands: a pair's copy read hangs, and
// the operator suspends the pair before the mover gives the copy up, then
// resumes it once the volume reads again. The report of the copy given
// up, which comes after, is of a copy from before the suspension, whose
// region the suspension took into the pair's bitmap and the resume copies
// already: it does not suspend the pair again, as for a crash recovery's
// copy (TestAResumeBeforeTheRecoveryCopyIsGivenUpStands).
func TestAResumeBeforeACopyIsGivenUpStands(t *testing.T) {
	r := hungCopyOfA(t)
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.ss.mu.Lock()
	r.ss.hangs = nil
	r.ss.mu.Unlock()
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.suspendAbandoned() // the mover's cut gives the copy from before the suspension up
	if a := r.pair("a"); a.State != Pending || a.Reason != "" {
		t.Fatalf("pair a suspended and resumed, then its copy from before reported given up: %+v, want its resync under way", a)
	}
	r.copiesTheRegionGivenUp(t)
}
