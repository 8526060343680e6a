package e2e

import (
	"bytes"
	"testing"
	"time"

	"duplex/pair"
	"duplex/site"
)

// TestLinkedStatusReportsOnlyWhatIsDurable: status and recover report only
// what is durable. With the primary linked and idle, the running
// secondary's status must name the same consistency time for its group as
// the same secondary reports once stopped (what `duplex recover` prints
// after a crash). Empty groups formed since the last journaled one move the
// status time forward in memory only: a kill -9 then comes back with the
// group's own, earlier time, and the operator who read "consistent as of
// T" before the crash finds an earlier time for the same data after it (the
// fault campaign's resync-crash trials count these as status regressions).
func TestLinkedStatusReportsOnlyWhatIsDurable(t *testing.T) {
	t.Parallel()
	cfg := newOpsConfig(t, 1<<20, 256<<10, time.Minute)
	s := startOps(t, cfg)
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	if err := s.prim.Write(t.Context(), "vol1", bytes.Repeat([]byte{0x42}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the write's group applied", func() bool {
		return s.sec.Replica().Stats().Group >= s.prim.Mover().Stats().Acked.Group
	})
	// The primary stays linked and writes nothing: its groups are empty.
	time.Sleep(time.Second)
	running := s.sec.Status()
	if running.Link != "connected" {
		t.Fatalf("secondary link %q, want connected", running.Link)
	}
	// Stopped while the primary is still linked, as a kill -9 would leave
	// it: the primary forms no group meanwhile.
	s.stopSecondary()
	off, err := site.OpenSecondary(cfg, quietLogger(), site.SecondaryOptions{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	stopped := off.Status()
	if *stopped.Group == *running.Group && stopped.ConsistencyTime != running.ConsistencyTime {
		t.Errorf("the running, linked secondary reported group %d consistent as of %s; the same secondary stopped reports group %d as of %s",
			*running.Group, running.ConsistencyTime, *stopped.Group, stopped.ConsistencyTime)
	}
	t.Logf("running: %s (group %d); stopped: %s (group %d)", running.ConsistencyTime, *running.Group, stopped.ConsistencyTime, *stopped.Group)
}
