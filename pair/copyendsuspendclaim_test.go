package pair

import (
	"context"
	"testing"
)

// TestSuspendOrDeleteAfterAResyncEndedClaimsItsEnd: a pair's resync copies
// every region written since its suspension at S0, and the end of the copy
// is captured; before the secondary acknowledges that end, the pair is
// suspended again (or deleted). The secondary journals the copy, its end
// (which ends its hold and applies the resync) and then the suspension: its
// copy of the volume is the primary's as of this second suspension, with
// every write made since S0. The pair must not go on claiming it consistent
// as of S0, whose image the resync overwrote: its bytes are no longer the
// primary's as of S0 (the secondary itself reports the later time).
func TestSuspendOrDeleteAfterAResyncEndedClaimsItsEnd(t *testing.T) {
	for _, del := range []bool{false, true} {
		name := "suspend"
		if del {
			name = "delete"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
			r.settle()
			if err := r.mg.Suspend("a"); err != nil {
				t.Fatal(err)
			}
			r.mv.ship()
			r.mg.promote()
			s0 := r.pair("a").Since
			for i := range 40 { // written while suspended: in the bitmap only
				r.write("a", int64(i)*twinRegion, 4096)
			}
			if err := r.mg.Resume("a"); err != nil {
				t.Fatal(err)
			}
			for range 8 {
				r.mg.copyOne(context.Background())
			}
			p := r.pair("a")
			if p.State != Pending || p.CopyEnd == 0 {
				t.Fatalf("setup: pair %+v, want its resync's end captured", p)
			}
			end := p.CopyEnd
			if del {
				if _, err := r.mg.Delete("a"); err != nil {
					t.Fatal(err)
				}
			} else if err := r.mg.Suspend("a"); err != nil {
				t.Fatal(err)
			}
			// The secondary journals the copy, its end and the suspension,
			// and moves on.
			r.write("b", 0, 4096)
			r.mv.ship()
			r.mg.promote()
			p = r.pair("a")
			if p.Consistent != 0 && p.Consistent < end {
				t.Fatalf("pair a, %s after its resync's end at %d was captured (suspended before at %d), claims its secondary copy consistent as of %d (since %d): "+
					"the secondary applied the resync of every write made since %d and holds the volume as of the %s; its bytes are not the primary's as of %d",
					name, end, s0, p.Consistent, p.Since, s0, name, p.Consistent)
			}
		})
	}
}
