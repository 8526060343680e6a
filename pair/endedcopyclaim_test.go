package pair

import (
	"context"
	"testing"
)

// TestSuspendOrDeleteAfterACopyEndedClaimsWhatTheSecondaryHolds: a copy
// that leaves the secondary no consistent copy while it runs (a resync
// accepted as inconsistent, or a pair's first copy) has its end captured;
// before the secondary acknowledges that end, the pair is suspended (or
// deleted). The secondary journals and applies the whole copy, its end and
// then the suspension: it holds the volume as of the suspension, a whole
// copy. The pair must claim that, not "no consistent copy", which was true
// only until the copy ended.
func TestSuspendOrDeleteAfterACopyEndedClaimsWhatTheSecondaryHolds(t *testing.T) {
	for _, tc := range []struct {
		name         string
		inconsistent bool // the copy: an inconsistent resync, or a first copy
		del          bool
	}{
		{"inconsistent resync, suspend", true, false},
		{"inconsistent resync, delete", true, true},
		{"first copy, suspend", false, false},
		{"first copy, delete", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
			if tc.inconsistent {
				r.settle()
				if err := r.mg.Suspend("a"); err != nil {
					t.Fatal(err)
				}
				r.mv.ship()
				r.mg.promote()
				for i := range 40 { // written while suspended: in the bitmap only
					r.write("a", int64(i)*twinRegion, 4096)
				}
				if err := r.mg.ResumeInconsistent("a"); err != nil {
					t.Fatal(err)
				}
			}
			for range 200 {
				if p := r.pair("a"); p.State == Pending && p.CopyEnd != 0 {
					break
				}
				r.mg.copyOne(context.Background())
			}
			p := r.pair("a")
			if p.State != Pending || p.CopyEnd == 0 || !(p.Inconsistent || p.FirstCopy) {
				t.Fatalf("setup: pair %+v, want its copy's end captured, the copy not consistent", p)
			}
			end := p.CopyEnd
			var at int64
			if tc.del {
				when, err := r.mg.Delete("a")
				if err != nil {
					t.Fatal(err)
				}
				at = when.UnixNano()
			} else if err := r.mg.Suspend("a"); err != nil {
				t.Fatal(err)
			}
			// The secondary journals and applies the copy, its end and the
			// suspension, and moves on.
			r.write("b", 0, 4096)
			r.mv.ship()
			r.mg.promote()
			p = r.pair("a")
			if p.Consistent < end || p.Inconsistent || p.FirstCopy {
				t.Errorf("pair a, %s after its copy's end at %d was captured, claims its secondary copy consistent as of %d (since %d, inconsistent %v, first copy %v): "+
					"the secondary applied the whole copy and then the pair's end of replication, and holds the volume as of it", tc.name, end, p.Consistent, p.Since,
					p.Inconsistent, p.FirstCopy)
			}
			if tc.del && at != 0 && at < end {
				t.Logf("Delete reported %d, before the copy's end %d: it could not know the end would be applied", at, end)
			}
		})
	}
}
