package site

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// TestLinkAckAgeSaysTheSecondaryIsHeard: a primary's status and metrics
// say how long ago its secondary last acknowledged anything on the link,
// the heartbeats of an idle primary included: a fraction of a second while
// it follows, absent (NaN as a gauge) at a primary that never reached it.
// The command line's pair routing reads it; the lag, long while a backlog
// ships, says it only of an idle link.
func TestLinkAckAgeSaysTheSecondaryIsHeard(t *testing.T) {
	p, _ := linkedSitesWithAWrite(t, 4096)
	within := max(2*time.Second, 20*time.Duration(linkConfig(t).Interval)).Seconds()
	var age float64
	waitFor(t, 30*time.Second, "the link acknowledged of late", func() bool {
		st := p.Status()
		if st.Link != "connected" || st.LinkAckAgeSeconds == nil {
			return false
		}
		age = *st.LinkAckAgeSeconds
		return age >= 0 && age <= within
	})
	// Idle, heard by its heartbeats' receipts: it stays young.
	time.Sleep(time.Duration(2 * within * float64(time.Second)))
	st := p.Status()
	if st.LinkAckAgeSeconds == nil || *st.LinkAckAgeSeconds > within {
		t.Fatalf("an idle linked primary: link_ack_age_seconds %v, want at most %vs (heartbeats acknowledged)", st.LinkAckAgeSeconds, within)
	}
	if g := sampleMap(p.Samples())["link_ack_age_seconds"].Value; math.IsNaN(g) || g < 0 || g > within {
		t.Errorf("an idle linked primary: duplex_link_ack_age_seconds %v, want 0 to %v", g, within)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["link_ack_age_seconds"]; !ok {
		t.Errorf("status JSON without link_ack_age_seconds: %s", b)
	}

	cfg := linkConfig(t)
	cfg.Primary.Secondary = "127.0.0.1:1" // never reached
	q, _, _ := runPrimary(t, cfg)
	time.Sleep(300 * time.Millisecond)
	if st := q.Status(); st.LinkAckAgeSeconds != nil {
		t.Errorf("a primary that never reached its secondary: link_ack_age_seconds %v, want absent", *st.LinkAckAgeSeconds)
	}
	if g := sampleMap(q.Samples())["link_ack_age_seconds"].Value; !math.IsNaN(g) {
		t.Errorf("a primary that never reached its secondary: duplex_link_ack_age_seconds %v, want NaN", g)
	}
}
