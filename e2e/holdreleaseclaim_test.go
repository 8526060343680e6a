package e2e

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/pair"
	"duplex/site"
)

// TestPrimaryStopsClaimingAVolumeWhoseHoldTheSecondaryGaveUp: a pair
// suspended part-way through its resync keeps, at the primary, the time of
// the suspension before the resync, which the secondary's hold keeps. When
// the secondary gives that hold up for lack of journal room, it applies the
// held groups over that image: the volume is a mix of before and after, at
// no time. The primary must learn it and claim no consistency time for the
// volume until a copy of it ends; the other volumes keep theirs.
func TestPrimaryStopsClaimingAVolumeWhoseHoldTheSecondaryGaveUp(t *testing.T) {
	t.Parallel()
	var free atomic.Uint64
	free.Store(1 << 40)
	s := holdVol2(t, site.SecondaryOptions{JournalFree: func() (uint64, error) { return free.Load(), nil }})
	pm := s.prim.Pairs()
	waitFor(t, 30*time.Second, "the primary claiming vol2 as of its suspension before the resync", func() bool {
		return s.pairs()["vol2"].Consistent != 0
	})
	held := s.pairs()["vol2"].Consistent

	free.Store(1 << 20)
	s.writeBlocks("vol1", 0x12, 16)
	waitFor(t, 30*time.Second, "the hold given up", func() bool {
		st := s.sec.Status()
		return strings.Contains(st.HoldReleased, "vol2")
	})
	s.writeBlocks("vol1", 0x13, 1) // a group acknowledged after the release
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := s.pairs()["vol2"]
		if p.Consistent == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the secondary gave up the hold of vol2's resync (%q), the primary still claims vol2's secondary copy consistent as of %d "+
				"(%d under the hold): the secondary applied the held groups over that image and holds vol2 consistent as of no time", s.sec.Status().HoldReleased, p.Consistent, held)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, v := range s.prim.Status().Volumes {
		if v.Name == "vol2" && (v.ConsistencyTime != "" || !strings.Contains(v.Note, "no consistent copy")) {
			t.Errorf("the primary's status of vol2 once its hold was given up: consistency time %q, note %q; want none, and a note saying why", v.ConsistencyTime, v.Note)
		}
	}
	for _, vol := range []string{"vol1", "vol3", "vol4"} {
		if p := s.pairs()[vol]; p.Consistent == 0 {
			t.Errorf("%s claims no consistency time after vol2's hold was given up: %+v", vol, p)
		}
	}

	// A copy of vol2 that ends makes its secondary copy consistent again.
	free.Store(1 << 40)
	s.writeBlocks("vol1", 0x14, 1)
	waitFor(t, 30*time.Second, "the primary learning of room again", func() bool {
		return s.prim.Mover().Stats().Acked.JournalFree > 1<<30
	})
	if err := pm.Resume("vol2"); err != nil {
		t.Fatal(err)
	}
	s.waitState("vol2", pair.Duplex, time.Minute)
	waitFor(t, 30*time.Second, "vol2 claimed consistent again once its copy ended", func() bool {
		return s.pairs()["vol2"].Consistent != 0
	})
}
