package e2e

import (
	"context"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/transport"
	"duplex/workload"
)

// Acknowledgements name the subsystems by index only between a primary
// and a secondary that both know how; with either site from before
// (forced here), they name them as before, and the session replicates
// dependent writes and converges all the same.
func TestAcksMixedVersions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                     string
		primaryOld, secondaryOld bool
	}{
		{"both new", false, false},
		{"new primary, secondary of before", false, true},
		{"primary of before, new secondary", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			net := transport.NewMemNetwork(1, transport.Faults{})
			var bad violations
			sec := startSecondary(t, dir, net, secondaryOpts{namedAcks: tc.secondaryOld, onApplied: func(s *secondarySite, g *consistency.Group) {
				vs, err := workload.Check(layout, s.readDirect)
				bad.add(g.Number, vs, err)
			}})
			p := startPrimary(t, dir, primaryOpts{interval: 2 * time.Millisecond, retransmit: 40 * time.Millisecond, sidefile: 2 << 20, dialer: net, namedAcks: tc.primaryOld})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := workload.Run(ctx, layout, p, 0, 45)
				done <- err
			}()
			waitGroups(t, &bad, 60, 30*time.Second, func() string { return replicationState(p.mover, sec.sec) })
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("workload: %v", err)
			}
			quiesce(t, p, sec)
			if _, list := bad.snapshot(); len(list) > 0 {
				t.Fatalf("violations:\n%v", list)
			}
			assertConverged(t, layout.Volumes, layout.BlocksPerVolume, p.read, sec.read)
			indexed := p.mover.Stats().IndexedAcks
			if want := !tc.primaryOld && !tc.secondaryOld; (indexed > 0) != want {
				t.Fatalf("the primary took %d acknowledgements by index; want them by index: %v", indexed, want)
			}
		})
	}
}
