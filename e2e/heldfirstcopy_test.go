package e2e

import (
	"slices"
	"testing"
	"time"

	"duplex/pair"
	"duplex/site"
)

// TestPrimaryDoesNotClaimAFirstCopyEndedUnderAHold: a volume whose first
// copy ends in groups that a resync of another volume holds is, at the
// secondary, still as it was before the hold; here that is its copy as of
// its deletion, behind writes made since. The primary may call the pair
// duplex (the copy is journaled), but must not report the volume
// consistent as of a time the secondary's copy of it does not match.
func TestPrimaryDoesNotClaimAFirstCopyEndedUnderAHold(t *testing.T) {
	t.Parallel()
	s := startDuplexOps(t, site.SecondaryOptions{})
	pm := s.prim.Pairs()
	rep := s.sec.Replica()
	if _, err := pm.Delete("vol3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "vol3's deletion applied", func() bool { return rep.Volume("vol3").State == "deleted" })
	// Written after the deletion: the secondary's vol3 lacks these.
	s.writeBlocks("vol3", 0x33, 16)
	applied := rep.Stats().Group
	s.writeBlocks("vol1", 0x10, 4)
	waitFor(t, 30*time.Second, "groups applied after vol3's deletion", func() bool { return rep.Stats().Group > applied })

	s.holdVol2Resync()
	if err := pm.Add("vol3"); err != nil {
		t.Fatal(err)
	}
	s.waitState("vol3", pair.Duplex, time.Minute)
	if got := rep.Stats().Resyncing; !slices.Equal(got, []string{"vol2"}) {
		t.Fatalf("the hold ended (resyncing %v): the scenario needs it open", got)
	}
	st := s.prim.Status()
	sv := rep.Volume("vol3")
	for _, v := range st.Volumes {
		if v.Name != "vol3" || v.ConsistencyTime == "" {
			continue
		}
		claimed, err := time.Parse(time.RFC3339Nano, v.ConsistencyTime)
		if err != nil {
			t.Fatal(err)
		}
		if !sv.Consistent || time.Unix(0, sv.Time).Before(claimed) {
			t.Errorf("under vol2's hold the primary reports vol3 %s, consistent as of %s; the secondary recovers vol3 as %+v (as of %s), "+
				"without the writes made after its deletion",
				v.State, v.ConsistencyTime, sv, time.Unix(0, sv.Time).UTC().Format(time.RFC3339Nano))
		}
	}
}
