package e2e

import (
	"slices"
	"testing"
	"time"

	"duplex/site"
)

// TestPrimaryDoesNotClaimASuspensionUnderAHold: a volume suspended while a
// resync of another volume holds the secondary is, at the secondary, as of
// the last group applied before the hold, not as of its suspension: the
// marker and the writes before it are journaled but held. The primary must
// not report the suspended volume consistent as of a later time than the
// secondary recovers it to.
func TestPrimaryDoesNotClaimASuspensionUnderAHold(t *testing.T) {
	t.Parallel()
	s := holdVol2(t, site.SecondaryOptions{})
	pm := s.prim.Pairs()
	rep := s.sec.Replica()
	// Written under the hold: journaled, not applied.
	s.writeBlocks("vol1", 0x11, 16)
	if err := pm.Suspend("vol1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "vol1's suspension journaled", func() bool {
		return rep.Volume("vol1").State == "suspended" && s.prim.Mover().Stats().Acked.Group >= rep.Stats().JournaledGroup
	})
	if got := rep.Stats().Resyncing; !slices.Equal(got, []string{"vol2"}) {
		t.Fatalf("the hold ended (resyncing %v): the scenario needs it open", got)
	}
	sv := rep.Volume("vol1")
	for _, v := range s.prim.Status().Volumes {
		if v.Name != "vol1" || v.ConsistencyTime == "" {
			continue
		}
		claimed, err := time.Parse(time.RFC3339Nano, v.ConsistencyTime)
		if err != nil {
			t.Fatal(err)
		}
		if !sv.Consistent || time.Unix(0, sv.Time).Before(claimed) {
			t.Errorf("under vol2's hold the primary reports vol1 %s, consistent as of %s; the secondary recovers vol1 as %+v (as of %s), without vol1's writes under the hold",
				v.State, v.ConsistencyTime, sv, time.Unix(0, sv.Time).UTC().Format(time.RFC3339Nano))
		}
	}
}
