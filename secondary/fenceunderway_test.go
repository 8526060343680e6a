package secondary

import (
	"testing"
)

// TestAFenceUnderWayIsNotReportedAsOne: while a fence waits for the volumes,
// nothing records it, and a restart (a kill -9) leaves the secondary
// unfenced, following its old generation. Status must not say it is fenced
// until it is: an operator who reads "fenced" then kills the daemon would
// find the old primary taken again.
func TestAFenceUnderWayIsNotReportedAsOne(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	open := r.journaledNotApplied(t)
	before, _ := r.sec.Generation()
	fenceDone := r.fenceUnderWay(t)
	g, fenced := r.sec.Generation()
	open()
	if err := <-fenceDone; err != nil {
		t.Fatalf("fence: %v", err)
	}
	if fenced {
		t.Fatalf("while the fence waited for the volumes (nothing recorded) the secondary reported itself fenced, at generation %s (it followed %s)", g, before)
	}
	if g2, fenced := r.sec.Generation(); !fenced || g2 == before {
		t.Fatalf("after the fence: generation %s, fenced %v; want a new generation, fenced", g2, fenced)
	}
}
