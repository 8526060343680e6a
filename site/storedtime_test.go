package site

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"duplex/control"
	"duplex/transport"
)

// TestRestartedPrimaryMarksStoredConsistencyTimesAsLowerBounds: a primary
// restarted while its secondary is down reports each volume's consistency
// time as the last run stored it, which may be up to 10 s behind what the
// secondary holds (the times of duplex pairs are saved that seldom), and
// until the secondary answers nobody knows better. The status says so
// (consistency_time_lower_bound) rather than pass the stored time off as
// the volume's; linked and acknowledged, the times are the secondary's
// and carry no such mark.
func TestRestartedPrimaryMarksStoredConsistencyTimesAsLowerBounds(t *testing.T) {
	cfg := switchoverConfig(t)
	sec := startSecondaryForSwitchover(t, cfg)
	p, stop := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	waitFor(t, time.Minute, "every volume to have a consistency time", func() bool {
		for _, v := range p.Status().Volumes {
			if v.ConsistencyTime == "" {
				return false
			}
		}
		return true
	})
	for _, v := range volumesJSON(t, p) {
		if v["consistency_time_lower_bound"] != nil {
			t.Errorf("linked and acknowledged, volume %v: consistency_time_lower_bound %v", v["name"], v["consistency_time_lower_bound"])
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	sec.stop()
	<-sec.done

	p, _ = startPrimaryForSwitchover(t, cfg)
	for _, v := range volumesJSON(t, p) {
		if v["consistency_time"] == nil {
			t.Fatalf("restarted, volume %v reports no consistency time: the test needs one stored", v["name"])
		}
		if v["consistency_time_lower_bound"] != true {
			t.Errorf("restarted with the secondary down, volume %v reports consistency_time %v as the secondary's (consistency_time_lower_bound %v): "+
				"it is the time the last run stored, which the secondary may be past", v["name"], v["consistency_time"], v["consistency_time_lower_bound"])
		}
	}
}

// volumesJSON is the volumes of p's status as its JSON says them.
func volumesJSON(t *testing.T, p *Primary) []map[string]any {
	t.Helper()
	b, err := json.Marshal(p.Status())
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Volumes []map[string]any `json:"volumes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st.Volumes
}

// TestAPromotedSitesFirstStartIsNoRestart: a promoted site's first start
// as the primary of the reverse direction reports each volume's time as
// the promotion's, which its secondary, the old primary, holds as of no
// later time of this site's history (it awaits its rejoin). Before, it
// was marked a lower bound, which the status page read as "stored before
// the primary restarted": there was no restart, and no later time.
func TestAPromotedSitesFirstStartIsNoRestart(t *testing.T) {
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, _, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	quiesceMover(t, prim)
	stopPrim()
	stopSec()
	pr, _, _, err := Promote(context.Background(), cfg, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := openReversed(t, cfg, quiet, transport.NewMemNetwork(2, transport.Faults{}))
	for _, v := range volumesJSON(t, b) {
		if v["rejoin_owed"] != true {
			t.Fatalf("volume %v at the promoted site: rejoin_owed %v, the test needs it awaiting the rejoin", v["name"], v["rejoin_owed"])
		}
		if v["consistency_time"] != control.FormatTime(pr.ConsistencyTime) {
			t.Errorf("volume %v at the promoted site: consistency_time %v, want the promotion's %s", v["name"], v["consistency_time"], control.FormatTime(pr.ConsistencyTime))
		}
		if v["consistency_time_lower_bound"] != nil {
			t.Errorf("volume %v at the promoted site's first start: consistency_time_lower_bound %v; want none: its secondary holds "+
				"no later time of this site's history", v["name"], v["consistency_time_lower_bound"])
		}
	}
}
