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
	r.endInconsistentResync(t, "a")
	// The secondary applies the copy's end and the suspension.
	r.write("b", 0, 4096)
	r.mv.ship()
	r.mg.promote()

	// A plain resync, suspended part-way: the secondary holds it open.
	r.startPlainResync(t, "a")
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	r.plainResumeRefusedForRoom(t, "a", ": the accepted inconsistent resync ended long before")
}

// endInconsistentResync suspends pair vol of a settled rig, writes 40
// regions of it, resumes it accepting an inconsistent resync, copies until
// that resync's end is captured, and suspends the pair again.
func (r *rig) endInconsistentResync(t *testing.T, vol string) {
	t.Helper()
	r.settle()
	if err := r.mg.Suspend(vol); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	for i := range 40 {
		r.write(vol, int64(i)*twinRegion, 4096)
	}
	if err := r.mg.ResumeInconsistent(vol); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		r.mg.copyOne(context.Background())
	}
	if p := r.pair(vol); p.State != Pending || p.CopyEnd == 0 {
		t.Fatalf("setup: pair %+v, want its inconsistent resync's end captured", p)
	}
	if err := r.mg.Suspend(vol); err != nil {
		t.Fatal(err)
	}
}

// startPlainResync writes 40 regions of the suspended pair vol and resumes
// it plainly (not --inconsistent), copying one step: its resync part-way.
func (r *rig) startPlainResync(t *testing.T, vol string) {
	t.Helper()
	for i := range 40 {
		r.write(vol, int64(i)*twinRegion, 4096)
	}
	if err := r.mg.Resume(vol); err != nil {
		t.Fatal(err)
	}
	r.mg.copyOne(context.Background())
	if p := r.pair(vol); p.State != Pending || p.CopyEnd != 0 || p.Copied == 0 {
		t.Fatalf("setup: pair %+v, want its plain resync part-way", p)
	}
}

// plainResumeRefusedForRoom checks that a plain resume of pair vol,
// suspended part-way through a plain resync, with the secondary's journal
// short, is refused for journal room and not announced inconsistent (why
// ends the failure message).
func (r *rig) plainResumeRefusedForRoom(t *testing.T, vol, why string) {
	t.Helper()
	r.mg.mu.Lock()
	unended := resyncUnended(r.mg.pairs[vol])
	need := r.mg.roomFor(64*twinRegion, 64)
	r.mg.mu.Unlock()
	r.mg.mover = &roomMover{memMover: r.mv, free: uint64(need) / 4}
	err := r.mg.Resume(vol)
	if unended || !errors.Is(err, ErrNoJournalRoom) {
		t.Fatalf("plain resume of a plain resync suspended part-way, with the journal short: resume error %v, announced inconsistent %v; "+
			"want it refused for journal room and not announced inconsistent (pair %+v)%s", err, unended, r.pair(vol), why)
	}
}
