package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
)

// TestDaemonsIdlePrimaryBehindAPartitionGivesTheLinkUp: a partition that
// drops every packet, and closes nothing, cuts an idle primary from its
// secondary. Its heartbeats go nowhere and no receipt comes back: its
// status says so (link_ack_age_seconds grows, every receipt of a
// heartbeat before kept it under a second), and the link is given up
// after the silence time (5 s), not reported connected for ever. Before:
// with no record set outstanding the link stayed "connected" while the
// other site could be promoted.
func TestDaemonsIdlePrimaryBehindAPartitionGivesTheLinkUp(t *testing.T) {
	t.Parallel()
	link := testenv.FreeAddr(t)
	proxy := newPartitionProxy(t, link)
	s := newSession(t, sessionOpts{name: "e2e-idle-partition", volSize: 4 * config.MiB, edit: func(c *config.Config) {
		c.Secondary.Listen, c.Primary.Secondary = link, proxy.addr()
		c.Primary.Listen, c.Primary.Journal = testenv.FreeAddr(t), filepath.Join(c.Dir, "primary", "journal")
	}})
	s.start()
	eventually(t, 30*time.Second, "the idle link acknowledged within a second", func() bool {
		ps := s.primaryStatus()
		return ps.Link == "connected" && ps.LinkAckAgeSeconds != nil && *ps.LinkAckAgeSeconds < 1
	})
	cut := time.Now()
	proxy.partition()
	var age float64
	eventually(t, 30*time.Second, "the link given up", func() bool {
		ps := s.primaryStatus()
		if ps.LinkAckAgeSeconds != nil {
			age = *ps.LinkAckAgeSeconds
		}
		return ps.Link != "connected"
	})
	took := time.Since(cut)
	t.Logf("link given up %s after the partition; last acknowledged %.1fs before", took.Round(time.Millisecond), age)
	// Silence counts from the first frame left unanswered, which may have
	// gone out (its receipt dropped, or still on its way under load) before
	// the partition: the give-up is judged against the last receipt, seen
	// in the same status that first said the link was down. The second
	// allows for the receipt's bookkeeping, taken just after its arrival.
	if age < 4 {
		t.Errorf("the link was given up %s after the partition, %.1fs after the last receipt: before the silence time (5 s)", took.Round(time.Millisecond), age)
	}
	if ps := s.primaryStatus(); ps.LinkAckAgeSeconds == nil || *ps.LinkAckAgeSeconds < took.Seconds()-1 {
		t.Errorf("link_ack_age_seconds %v once the link was given up %s after the partition: want it at least that old", ps.LinkAckAgeSeconds, took.Round(time.Millisecond))
	}
}
