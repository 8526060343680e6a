package pair

import (
	"context"
	"fmt"
	"testing"
)

// TestDeleteDuringAResyncClaimsNoTime: a pair deleted while its resync
// runs, or suspended part-way through it, ends the secondary's hold for it:
// the secondary applies what it held over the image the hold kept, and the
// volume's copy there is a mix of before and after the resync, consistent
// as of no time. The delete must not report the suspension before the
// resync as when the copy was last consistent, nor may the deleted pair
// claim it afterwards.
func TestDeleteDuringAResyncClaimsNoTime(t *testing.T) {
	for _, suspended := range []bool{false, true} {
		name := "pending"
		if suspended {
			name = "suspended part-way"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t, 64*twinRegion, 8<<20, "a")
			r.settle()
			if err := r.mg.Suspend("a"); err != nil {
				t.Fatal(err)
			}
			r.mv.ship()
			r.mg.promote()
			suspendedAt := r.pair("a").Since
			for i := range 40 {
				r.write("a", int64(i)*twinRegion, 4096)
			}
			if err := r.mg.Resume("a"); err != nil {
				t.Fatal(err)
			}
			r.mg.copyOne(context.Background())
			if suspended {
				if err := r.mg.Suspend("a"); err != nil {
					t.Fatal(err)
				}
			}
			r.deletesClaimingNoTime(t, fmt.Sprintf("deleted part-way through the resync of what was written since its suspension at %d", suspendedAt),
				"the resync's first regions")
		})
	}
}

// deletesClaimingNoTime deletes a, part-way through a resync the secondary
// holds (as why says), and checks that neither the delete nor the deleted
// pair afterwards claims a time for a's copy there: the delete ends the
// hold, which applies the copies made (copied) over the image it kept.
func (r *rig) deletesClaimingNoTime(t *testing.T, why, copied string) {
	t.Helper()
	r.mv.ship()
	r.mg.promote()
	at, err := r.mg.Delete("a")
	if err != nil {
		t.Fatal(err)
	}
	if at.UnixNano() != 0 {
		t.Fatalf("%s, pair a reports its secondary copy last consistent as of %d: "+
			"the delete ends the secondary's hold, which applies %s over that image", why, at.UnixNano(), copied)
	}
	r.mv.release() // the hold ends with the deletion
	r.mv.ship()
	r.mg.promote()
	if p := r.pair("a"); p.Consistent != 0 || !p.Inconsistent {
		t.Fatalf("%s, pair a afterwards: %+v, want consistent as of no time", why, p)
	}
}
