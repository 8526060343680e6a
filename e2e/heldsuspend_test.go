package e2e

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"duplex/pair"
	"duplex/site"
)

// TestPrimaryDoesNotClaimASuspensionUnderAHold: a volume suspended while a
// resync of another volume holds the secondary is, at the secondary, as of
// the last group applied before the hold, not as of its suspension: the
// marker and the writes before it are journaled but held. The primary must
// not report the suspended volume consistent as of a later time than the
// secondary recovers it to.
func TestPrimaryDoesNotClaimASuspensionUnderAHold(t *testing.T) {
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
	// Written under the hold: journaled, not applied.
	write("vol1", 0x11, 16)
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
