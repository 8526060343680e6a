package site

import (
	"encoding/json"
	"testing"
	"time"
)

// TestLagIsNotZeroWhenUnknown: a primary that has not reached its secondary
// since it started (a restart while the secondary is down, a firewall) has
// no consistency time to report, and reports lag_seconds 0 in its status
// JSON and duplex_lag_seconds 0 in /metrics: the lag of a secondary that is
// current. An alert on the lag never fires for the whole outage; the
// history leaves the lag out for this very reason ("a lag of 0 would claim
// the secondary is current"). A fresh secondary with no group does the
// same.
func TestLagIsNotZeroWhenUnknown(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Primary.Secondary = "127.0.0.1:1" // never reached
	p, _, _ := runPrimary(t, cfg)
	time.Sleep(300 * time.Millisecond)
	st := p.Status()
	if st.ConsistencyTime != "" {
		t.Fatalf("consistency_time %q with no secondary ever reached", st.ConsistencyTime)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if lag, ok := m["lag_seconds"]; ok && lag == 0.0 {
		t.Errorf("primary status: consistency_time unknown, lag_seconds 0")
	}
	if lag := sampleMap(p.Samples())["lag_seconds"].Value; lag == 0 {
		t.Errorf("primary duplex_lag_seconds 0 with no consistency time")
	}

	scfg := linkConfig(t)
	s, _ := runSecondary(t, scfg)
	if s.Status().ConsistencyTime == "" {
		if lag := sampleMap(s.samples())["lag_seconds"].Value; lag == 0 {
			t.Errorf("secondary duplex_lag_seconds 0 with no consistency time")
		}
	}
}
