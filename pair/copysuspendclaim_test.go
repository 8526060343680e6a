package pair

import (
	"context"
	"testing"
)

// TestSuspendInTheMiddleOfACopyClaimsNoNewConsistencyTime: a pair suspended
// while its copy runs has a secondary copy that is part old, part copied:
// consistent as of no time if the copy is its first (or a resync the
// operator accepted as inconsistent), and otherwise only as of the
// suspension before the resync, which a hold keeps. Suspending it must not
// claim the secondary copy consistent as of the moment of this suspension.
func TestSuspendInTheMiddleOfACopyClaimsNoNewConsistencyTime(t *testing.T) {
	t.Run("first copy", func(t *testing.T) {
		r := newRig(t, 64*twinRegion, 8<<20, "a")
		r.mg.copyOne(context.Background()) // part of the first copy
		r.mv.ship()
		r.mg.promote()
		if p := r.pair("a"); p.State != Pending || p.Copied == 0 || p.Copied >= p.Size {
			t.Fatalf("setup: pair %+v, want its first copy part-way", p)
		}
		if err := r.mg.Suspend("a"); err != nil {
			t.Fatal(err)
		}
		r.mv.ship()
		r.mg.promote()
		if p := r.pair("a"); p.Consistent != 0 {
			t.Fatalf("suspended part-way through its first copy (%d of %d bytes copied), pair a claims its secondary copy consistent as of %d: "+
				"the secondary never held a whole copy of it", p.Copied, p.Size, p.Consistent)
		}
	})
	t.Run("resync", func(t *testing.T) {
		r := newRig(t, 64*twinRegion, 8<<20, "a")
		r.settle()
		if err := r.mg.Suspend("a"); err != nil {
			t.Fatal(err)
		}
		r.mv.ship()
		r.mg.promote()
		suspendedAt := r.pair("a").Since
		for i := range 40 { // written while suspended: in the bitmap only
			r.write("a", int64(i)*twinRegion, 4096)
		}
		if err := r.mg.Resume("a"); err != nil {
			t.Fatal(err)
		}
		r.mg.copyOne(context.Background()) // part of the resync
		if err := r.mg.Suspend("a"); err != nil {
			t.Fatal(err)
		}
		r.mv.ship()
		r.mg.promote()
		if p := r.pair("a"); p.Consistent > suspendedAt {
			t.Fatalf("suspended part-way through the resync of what was written since its suspension at %d, pair a claims its secondary copy "+
				"consistent as of %d: the secondary holds it as of %d at best (the writes since are in the bitmap, part of them copied)",
				suspendedAt, p.Consistent, suspendedAt)
		}
	})
}
