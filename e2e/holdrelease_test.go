package e2e

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/pair"
	"duplex/site"
)

// TestSuspendedResyncNeverStallsTheOtherVolumes: a pair suspended in the
// middle of its resync and left so keeps the secondary's hold, with every
// group journaled since, until its journal nears its limit; then the
// secondary gives the hold up: the other volumes are applied and go on,
// the suspended volume is reported not consistent (never silently
// consistent), status says why with the numbers, and resuming the pair
// makes it consistent again, byte-identical to the primary.
func TestSuspendedResyncNeverStallsTheOtherVolumes(t *testing.T) {
	t.Parallel()
	var free atomic.Uint64
	free.Store(1 << 40)
	s := holdVol2(t, site.SecondaryOptions{JournalFree: func() (uint64, error) { return free.Load(), nil }})
	pm := s.prim.Pairs()
	// Writes to the other volumes are journaled, not applied: the hold.
	held := s.sec.Replica().Stats().Group
	s.writeBlocks("vol1", 0x11, 16)
	waitFor(t, 30*time.Second, "vol1's writes journaled under the hold", func() bool {
		st := s.sec.Replica().Stats()
		return st.HeldGroups > 0 && st.JournaledGroup > held+1
	})
	if st := s.sec.Replica().Stats(); st.Group != held {
		t.Fatalf("applied group %d under a hold that began after group %d", st.Group, held)
	}

	// The journal's file system nears its limit: the next group gives the
	// hold up.
	free.Store(1 << 20)
	s.writeBlocks("vol1", 0x12, 16)
	waitFor(t, 30*time.Second, "the hold given up and everything journaled applied", func() bool {
		st := s.sec.Replica().Stats()
		return st.HeldGroups == 0 && len(st.Resyncing) == 0 && st.Group == st.JournaledGroup && st.Group > held
	})
	got := make([]byte, 4096)
	waitFor(t, 30*time.Second, "vol1's last write applied at the secondary", func() bool {
		if err := s.sec.ReadAt("vol1", got, 15*4096); err != nil {
			t.Fatal(err)
		}
		return got[0] == 0x12
	})
	st := s.sec.Status()
	notes := map[string]string{}
	for _, v := range st.Volumes {
		notes[v.Name] = v.Consistency
	}
	if !strings.HasPrefix(notes["vol2"], "not consistent: the secondary gave up holding its resync") {
		t.Errorf("vol2 after its hold was given up: %q", notes["vol2"])
	}
	for _, vol := range []string{"vol1", "vol3", "vol4"} {
		if !strings.HasPrefix(notes[vol], "consistent as of "+st.ConsistencyTime) {
			t.Errorf("%s: %q, want consistent as of %s", vol, notes[vol], st.ConsistencyTime)
		}
	}
	if !strings.Contains(st.HoldReleased, "vol2") || !strings.Contains(st.HoldReleased, "MiB free") {
		t.Errorf("status does not say the hold of vol2 was given up, with the numbers: %q", st.HoldReleased)
	}
	t.Logf("status: %s", st.HoldReleased)

	// The primary hears of the shortage: the acknowledgement of the group
	// that gave the hold up says it, and may reach the primary after the
	// secondary applied everything. Until then the primary's figure is the
	// room from before the shortage, which the wait below would take for
	// the room back, and the resume would then meet the shortage's word.
	short := uint64(1)
	if reserve := uint64(s.sec.Replica().JournalReserve()); 1<<20 > reserve {
		short = 1<<20 - reserve
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("the primary learning of the shortage (%d bytes of room)", short), func() bool {
		return s.prim.Mover().Stats().Acked.JournalFree == short
	})

	// With room again, resuming vol2 copies what it still needs, and it is
	// consistent once that copy ends. The secondary's figures reach the
	// primary in the order they were read: once it says there is room,
	// nothing read before says otherwise.
	free.Store(1 << 40)
	s.writeBlocks("vol1", 0x13, 1)
	room := uint64(1<<40 - s.sec.Replica().JournalReserve())
	waitFor(t, 30*time.Second, fmt.Sprintf("the primary learning of %d bytes of room", room), func() bool {
		return s.prim.Mover().Stats().Acked.JournalFree == room
	})
	if err := pm.Resume("vol2"); err != nil {
		t.Fatal(err)
	}
	s.waitState("vol2", pair.Duplex, time.Minute)
	waitFor(t, 30*time.Second, "vol2 consistent again at the secondary", func() bool {
		for _, v := range s.sec.Status().Volumes {
			if v.Name == "vol2" {
				return strings.HasPrefix(v.Consistency, "consistent as of ")
			}
		}
		return false
	})
	s.assertImagesEqual()
}
