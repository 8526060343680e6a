package pair

import (
	"context"
	"errors"
	"testing"
)

// TestAPlainResyncAfterAnEndedInconsistentOneIsNotAnnouncedInconsistent:
// an inconsistent resync the operator accepted ends (its end captured) and
// the pair is suspended before the secondary acknowledges that end; the
// secondary applies the end, so its copy is consistent again (as of the
// suspension). The operator later resumes the pair with a plain resync
// (not --inconsistent), which the secondary holds the others for; that
// resync is suspended part-way, and the hold stays open there. Resumed
// again, plainly, it must still be a consistent resync: its journal room
// checked (refused here, the journal being short), and not announced
// inconsistent, which would have the secondary give up the hold and apply
// the held groups over the volume's consistent image, an inconsistent
// resync nobody accepted (DESIGN, invariant 6: never started inconsistent
// silently). Inconsistent stays set from the first resync (promote clears
// it only for a pending pair whose end is acknowledged), the plain
// resync's startCopy keeps it, and resyncUnended then takes the plain
// resync, suspended part-way, for the accepted one.
func TestAPlainResyncAfterAnEndedInconsistentOneIsNotAnnouncedInconsistent(t *testing.T) {
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
	// The secondary applies the copy's end and the suspension.
	r.write("b", 0, 4096)
	r.mv.ship()
	r.mg.promote()

	// A plain resync, suspended part-way: the secondary holds it open.
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
			"want it refused for journal room and not announced inconsistent (pair %+v): the accepted inconsistent resync ended long before",
			err, unended, r.pair("a"))
	}
}
