package pair

import (
	"context"
	"errors"
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
	r.settle()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	for i := range 40 {
		r.write("a", int64(i)*twinRegion, 4096)
	}
	if err := r.mg.ResumeInconsistent("a"); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		r.mg.copyOne(context.Background())
	}
	if p := r.pair("a"); p.State != Pending || p.CopyEnd == 0 {
		t.Fatalf("setup: pair %+v, want its inconsistent resync's end captured", p)
	}
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	at := r.pair("a").AfterEnd

	// At once a plain resync, over the copy that end makes consistent.
	for i := range 40 {
		r.write("a", int64(i)*twinRegion, 4096)
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	r.mg.copyOne(context.Background())
	if p := r.pair("a"); p.State != Pending || p.CopyEnd != 0 || p.Copied == 0 {
		t.Fatalf("setup: pair %+v, want its plain resync part-way", p)
	}
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

	r.mg.mu.Lock()
	unended := resyncUnended(r.mg.pairs["a"])
	need := r.mg.roomFor(64*twinRegion, 64)
	r.mg.mu.Unlock()
	r.mg.mover = &roomMover{memMover: r.mv, free: uint64(need) / 4}
	err := r.mg.Resume("a")
	if unended || !errors.Is(err, ErrNoJournalRoom) {
		t.Fatalf("plain resume of a plain resync suspended part-way, with the journal short: resume error %v, announced inconsistent %v; "+
			"want it refused for journal room and not announced inconsistent (pair %+v)", err, unended, r.pair("a"))
	}
}
