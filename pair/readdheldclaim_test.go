package pair

import (
	"context"
	"testing"
)

// TestDeleteAfterAFirstCopyEndedUnderAHoldClaimsItsEnd: a deleted pair is
// added again, and part of its first copy is applied over the secondary's
// copy from before the deletion; then a resync of another volume holds the
// secondary, and the first copy's end is journaled but held unapplied. The
// pair, duplex once that end is acknowledged, is deleted again. While the
// hold lasts the secondary's copy of the volume is a mix of the old image
// and part of the first copy; once it ends, the secondary applies the copy
// and then the deletion, and holds the volume as of the second deletion.
// The pair must claim neither the time of the first deletion (whose image
// the first copy overwrote) nor any other time while the hold lasts.
func TestDeleteAfterAFirstCopyEndedUnderAHoldClaimsItsEnd(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.settle()
	if _, err := r.mg.Delete("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	d0 := r.pair("a").Consistent
	if err := r.mg.Add("a"); err != nil {
		t.Fatal(err)
	}
	// Part of the first copy is applied, then b's resync holds the
	// secondary.
	r.mg.copyOne(context.Background())
	r.mv.ship()
	r.mg.promote()
	r.mv.hold()
	for range 8 {
		r.mg.copyOne(context.Background())
	}
	r.mv.ship()
	r.mg.promote()
	p := r.pair("a")
	if p.State != Duplex || p.CopyEnd == 0 {
		t.Fatalf("setup: pair %+v, want it duplex with its first copy's end acknowledged", p)
	}
	end := p.CopyEnd
	if _, err := r.mg.Delete("a"); err != nil {
		t.Fatal(err)
	}
	r.write("b", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); p.Consistent != 0 {
		t.Fatalf("pair a, deleted again while its first copy's end is held unapplied (part of that copy applied over the image of its first deletion at %d), "+
			"claims its secondary copy consistent as of %d: that copy is a mix, consistent as of no time", d0, p.Consistent)
	}
	r.mv.release()
	r.write("b", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); p.Consistent != 0 && p.Consistent < end {
		t.Fatalf("pair a, deleted again after its first copy's end at %d was journaled, claims its secondary copy consistent as of %d (first deleted at %d) once the hold ended: "+
			"the secondary applied the first copy and then the deletion", end, p.Consistent, d0)
	}
}
