package e2e

import (
	"testing"
	"time"

	"duplex/site"
)

// TestPrimaryStatusUnderAHoldClaimsOnlyWhatTheSecondaryRecovers: while a
// resync holds the secondary's volumes at the last group before it, the
// secondary journals and acknowledges every group but applies none, and a
// loss of the primary recovers the volumes to that group's time. The
// primary's status must not claim more: its consistency time, and that of
// each duplex volume, are what the secondary is a crash-consistent image
// of, not what it has journaled; otherwise lag_seconds at the primary stays
// near zero while the time the secondary recovers to falls behind without
// bound.
func TestPrimaryStatusUnderAHoldClaimsOnlyWhatTheSecondaryRecovers(t *testing.T) {
	t.Parallel()
	s := holdVol2(t, site.SecondaryOptions{})
	held := s.sec.Replica().Stats().Group
	s.writeBlocks("vol1", 0x11, 16)
	waitFor(t, 30*time.Second, "vol1's writes journaled under the hold", func() bool {
		st := s.sec.Replica().Stats()
		return st.HeldGroups > 0 && st.JournaledGroup > held+1 && s.prim.Mover().Stats().Acked.Group >= st.JournaledGroup
	})
	sec := s.sec.Status()
	prim := s.prim.Status()
	at := func(ts string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatalf("consistency time %q: %v", ts, err)
		}
		return tm
	}
	if at(prim.ConsistencyTime).After(at(sec.ConsistencyTime)) {
		t.Errorf("under a hold the primary reports consistency time %s, the secondary %s (applied group %d): "+
			"a loss of the primary now recovers to the secondary's", prim.ConsistencyTime, sec.ConsistencyTime, held)
	}
	for _, v := range prim.Volumes {
		if v.Name == "vol1" && at(v.ConsistencyTime).After(at(sec.ConsistencyTime)) {
			t.Errorf("under a hold the primary reports vol1 consistent as of %s, the secondary holds it as of %s", v.ConsistencyTime, sec.ConsistencyTime)
		}
	}
}
