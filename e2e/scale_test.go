package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"duplex/config"
	"duplex/transport"
)

// scaleSession is a session of subs subsystems of perSub small volumes
// each, as the bench's scale section runs (8 MiB sidefile a subsystem).
func scaleSession(t *testing.T, dir string, subs, perSub int) *config.Config {
	t.Helper()
	return siteSession(t, dir, func(c *config.Config) {
		c.Primary.SidefileLimit = 8 * config.MiB
		c.Primary.Subsystems = nil
		c.Secondary.Volumes = nil
		for s := range subs {
			ss := config.Subsystem{ID: fmt.Sprintf("ss%03d", s+1)}
			for v := range perSub {
				name := fmt.Sprintf("v%03d-%d", s+1, v+1)
				ss.Volumes = append(ss.Volumes, config.Volume{Name: name, Path: filepath.Join(dir, "primary", name+".img"), Size: 128 * config.KiB})
				c.Secondary.Volumes = append(c.Secondary.Volumes, config.SecondaryVolume{Name: name, Path: filepath.Join(dir, "secondary", name+".img")})
			}
			c.Primary.Subsystems = append(c.Primary.Subsystems, ss)
		}
	})
}

// TestSitesManySubsystemsCopyAndStop is the scale section's session of
// 1,024 volumes in 128 subsystems on the daemons' wiring: every initial
// copy finishes, and the primary stops, each within a generous bound. The
// work of the session must grow with what it carries: an acknowledgement
// that walks every held record set for every subsystem, a receipt of every
// subsystem's position for every record set, a stop that cuts a group per
// acknowledgement, or a save that rewrites every pending pair's bitmap
// leaves it stuck (before those were fixed: 1 of 1,024 copies in 90 s).
func TestSitesManySubsystemsCopyAndStop(t *testing.T) {
	subs, perSub := 128, 8
	if testing.Short() || raceDetector {
		// As many subsystems, fewer volumes: the race detector makes
		// each initial copy several times dearer.
		perSub = 2
	}
	dir := t.TempDir()
	cfg := scaleSession(t, dir, subs, perSub)
	s := startSites(t, cfg, transport.NewMemNetwork(1, transport.Faults{}), nil)

	const bound = 3 * time.Minute
	deadline := time.Now().Add(bound)
	for {
		vs := s.prim.Status().Volumes
		duplex := 0
		for _, v := range vs {
			if v.State == "duplex" {
				duplex++
			}
		}
		if duplex == subs*perSub {
			break
		}
		if time.Now().After(deadline) {
			dumpGoroutines(t)
			t.Fatalf("stuck: %d of %d initial copies finished within %s (%s)", duplex, subs*perSub, bound,
				replicationState(s.prim.Mover(), s.sec.Replica()))
		}
		time.Sleep(50 * time.Millisecond)
	}

	stopped := make(chan struct{})
	go func() {
		s.stopPrimary()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(bound):
		dumpGoroutines(t)
		t.Fatalf("stuck: the primary did not stop within %s of its context ending", bound)
	}
	select {
	case err := <-s.primaryDone:
		if err != nil {
			t.Errorf("primary stopped: %v", err)
		}
	case <-time.After(bound):
		dumpGoroutines(t)
		t.Fatalf("stuck: the primary did not stop within %s of its context ending", bound)
	}
	s.stopPrimary = nil
	s.stopSecondary()
	if err := <-s.secondaryDone; err != nil {
		t.Errorf("secondary stopped: %v", err)
	}
}
