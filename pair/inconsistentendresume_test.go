package pair

import (
	"testing"
)

// TestAPlainResumeBeforeAnInconsistentResyncsEndIsAppliedIsPlain: the end of
// a resync the operator accepted as inconsistent is captured and the pair
// suspended, and the operator resumes it plainly before the secondary has
// even journaled that end. The end comes ahead of the new resync's marker
// in the stream, so the secondary's copy is consistent again (as of the
// suspension) when that resync begins: a resync it holds the others for,
// which must stay plain however it is resumed, its journal room checked,
// and which claims the suspension once the secondary applied the end.
func TestAPlainResumeBeforeAnInconsistentResyncsEndIsAppliedIsPlain(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.endInconsistentResync(t, "a")
	at := r.pair("a").AfterEnd

	// At once a plain resync, over the copy that end makes consistent.
	r.startPlainResync(t, "a")
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); p.Consistent == 0 || p.Consistent > at {
		t.Errorf("pair a in a plain resync, the secondary past the end of its inconsistent one and the suspension at %d after it: "+
			"claims %d, want the suspension's time (pair %+v)", at, p.Consistent, p)
	}
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	r.plainResumeRefusedForRoom(t, "a", "")
}
