package e2e

import (
	"bytes"
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
	const volSize = 1 << 20
	cfg := newOpsConfig(t, volSize, 256<<10, time.Minute)
	s := &opsSession{t: t, cfg: cfg, net: newMemNet()}
	s.startSecondaryWith(site.SecondaryOptions{})
	s.startPrimary()
	t.Cleanup(func() {
		s.stopPrimary()
		s.stopSecondary()
	})
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	pm := s.prim.Pairs()
	write := func(vol string, fill byte, blocks int) {
		buf := bytes.Repeat([]byte{fill}, 4096)
		for i := range blocks {
			if err := s.prim.Write(t.Context(), vol, buf, int64(i)*4096); err != nil {
				t.Fatal(err)
			}
		}
	}
	rep := s.sec.Replica()
	if _, err := pm.Delete("vol3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "vol3's deletion applied", func() bool { return rep.Volume("vol3").State == "deleted" })
	// Written after the deletion: the secondary's vol3 lacks these.
	write("vol3", 0x33, 16)
	applied := rep.Stats().Group
	write("vol1", 0x10, 4)
	waitFor(t, 30*time.Second, "groups applied after vol3's deletion", func() bool { return rep.Stats().Group > applied })

	if err := pm.Suspend("vol2"); err != nil {
		t.Fatal(err)
	}
	write("vol2", 0x22, volSize/4096)
	s.net.SetDown(true)
	if err := pm.Resume("vol2"); err != nil {
		t.Fatal(err)
	}
	if err := pm.Suspend("vol2"); err != nil {
		t.Fatal(err)
	}
	s.net.SetDown(false)
	waitFor(t, 30*time.Second, "the secondary holding for vol2's resync", func() bool {
		return slices.Equal(rep.Stats().Resyncing, []string{"vol2"})
	})
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
