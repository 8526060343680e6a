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
// copy finishes, and the primary stops. The work of the session must grow
// with what it carries: an acknowledgement that walks every held record set
// for every subsystem, a receipt of every subsystem's position for every
// record set, a stop that cuts a group per acknowledgement, or a save that
// rewrites every pending pair's bitmap leaves it stuck (before those were
// fixed: 1 of 1,024 copies in 90 s), which the test binary's timeout ends.
// It fails on its own when nothing moves for minutes, not at a wall-clock
// limit: at a load of 15 on 2 cores a fixed 3 minutes failed sessions that
// were still copying.
func TestSitesManySubsystemsCopyAndStop(t *testing.T) {
	t.Parallel()
	subs, perSub := 128, 8
	if testing.Short() || raceDetector {
		// As many subsystems, fewer volumes: the race detector makes
		// each initial copy several times dearer.
		perSub = 2
	}
	dir := t.TempDir()
	cfg := scaleSession(t, dir, subs, perSub)
	s := startSites(t, cfg, transport.NewMemNetwork(1, transport.Faults{}), nil)

	// Progress, not a wall-clock limit, says whether it is stuck: under a
	// heavy load the copies take long, but something moves. Only a session
	// in which nothing moves for stall fails.
	const stall = 3 * time.Minute
	moved := func() string {
		ms, ss := s.prim.Mover().Stats(), s.sec.Replica().Stats()
		var copied int64
		duplex := 0
		for _, v := range s.prim.Status().Volumes {
			copied += v.CopiedBytes
			if v.State == "duplex" {
				duplex++
			}
		}
		return fmt.Sprintf("%d duplex, %d copied, acked %d, held %d, journaled %d, applied %d",
			duplex, copied, ms.Acked.Group, ms.HeldBytes, ss.JournaledGroup, ss.Group)
	}
	waitMoving(t, stall, moved, func() bool {
		duplex := 0
		for _, v := range s.prim.Status().Volumes {
			if v.State == "duplex" {
				duplex++
			}
		}
		return duplex == subs*perSub
	}, func() string {
		return fmt.Sprintf("initial copies of %d volumes (%s)", subs*perSub, replicationState(s.prim.Mover(), s.sec.Replica()))
	})

	stopped := make(chan struct{})
	go func() {
		s.stopPrimary()
		close(stopped)
	}()
	var stopErr error
	primaryDone := false
	waitMoving(t, stall, moved, func() bool {
		select {
		case <-stopped:
		default:
			return false
		}
		if !primaryDone {
			select {
			case stopErr = <-s.primaryDone:
				primaryDone = true
			default:
				return false
			}
		}
		return true
	}, func() string {
		return fmt.Sprintf("the primary's stop after its context ended (%s)", replicationState(s.prim.Mover(), s.sec.Replica()))
	})
	if stopErr != nil {
		t.Errorf("primary stopped: %v", stopErr)
	}
	s.stopPrimary = nil
	s.stopSecondary()
	if err := <-s.secondaryDone; err != nil {
		t.Errorf("secondary stopped: %v", err)
	}
}

// waitMoving polls until done holds, failing only once progress (what
// moved returns) has stood still for stall: a loaded machine makes the work
// slow, which is no failure, while a session in which nothing moves is
// stuck. what says what was awaited.
func waitMoving(t *testing.T, stall time.Duration, moved func() string, done func() bool, what func() string) {
	t.Helper()
	last, since := moved(), time.Now()
	for !done() {
		if now := moved(); now != last {
			last, since = now, time.Now()
		}
		if time.Since(since) > stall {
			dumpGoroutines(t)
			t.Fatalf("stuck: nothing moved for %s awaiting %s (last: %s)", stall, what(), last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
