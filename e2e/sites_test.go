package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"duplex/config"
	"duplex/consistency"
	"duplex/site"
	"duplex/transport"
	"duplex/workload"
)

// sites is a session's two sites built the way the daemons build them
// (site.OpenPrimary and site.OpenSecondary from a loaded config, with pairs,
// activity log, pacing and the read-only view), linked by an in-memory
// network instead of TCP.
type sites struct {
	cfg  *config.Config
	prim *site.Primary
	sec  *site.Secondary

	stopPrimary, stopSecondary context.CancelFunc
	primaryDone, secondaryDone chan error
}

// siteVolume names workload volume i in the demo layout (vol1..vol4, two per
// subsystem).
func siteVolume(i int) string { return fmt.Sprintf("vol%d", i+1) }

// siteSession writes and loads a session config like the demo's, scaled to
// the workload layout: every listener takes a free port of its own, and the
// link is replaced by the in-memory network.
func siteSession(t *testing.T, dir string, edit func(c *config.Config)) *config.Config {
	t.Helper()
	c := config.Demo(dir)
	c.Session = "e2e-sites"
	c.ControlTokenFile = ""
	c.Primary.NBD, c.Primary.Control = "127.0.0.1:0", "127.0.0.1:0"
	c.Secondary.Listen, c.Secondary.Control, c.Secondary.NBD = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	for i := range c.Primary.Subsystems {
		for j := range c.Primary.Subsystems[i].Volumes {
			c.Primary.Subsystems[i].Volumes[j].Size = config.Size(layout.BlocksPerVolume * workload.BlockSize)
		}
	}
	if edit != nil {
		edit(c)
	}
	return writeConfig(t, filepath.Join(dir, "duplex.toml"), c)
}

// startSites opens and runs both sites of cfg over net. onApplied, if set,
// sees every applied group with readers held off.
func startSites(t *testing.T, cfg *config.Config, net *transport.MemNetwork,
	onApplied func(g *consistency.Group, read func(vol string, p []byte, off int64) error)) *sites {
	t.Helper()
	s := &sites{cfg: cfg, primaryDone: make(chan error, 1), secondaryDone: make(chan error, 1)}
	sec, err := site.OpenSecondary(cfg, quietLogger(), site.SecondaryOptions{Listener: net, OnApplied: onApplied})
	if err != nil {
		t.Fatal(err)
	}
	s.sec = sec
	sctx, stopS := context.WithCancel(context.Background())
	s.stopSecondary = stopS
	go func() { s.secondaryDone <- sec.Run(sctx) }()
	prim, err := site.OpenPrimary(cfg, quietLogger(), site.PrimaryOptions{Dialer: net,
		Retransmit: 40 * time.Millisecond, HandshakeTimeout: 500 * time.Millisecond})
	if err != nil {
		stopS()
		<-s.secondaryDone
		t.Fatal(err)
	}
	s.prim = prim
	pctx, stopP := context.WithCancel(context.Background())
	s.stopPrimary = stopP
	go func() { s.primaryDone <- prim.Run(pctx, time.Minute) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop stops the primary (which ships what it holds) and then the secondary.
func (s *sites) stop(t *testing.T) {
	if s.stopPrimary == nil {
		return
	}
	s.stopPrimary()
	if err := <-s.primaryDone; err != nil {
		t.Errorf("primary stopped: %v", err)
	}
	s.stopSecondary()
	if err := <-s.secondaryDone; err != nil {
		t.Errorf("secondary stopped: %v", err)
	}
	s.stopPrimary = nil
}

// waitDuplex waits until every pair has finished its initial copy.
func (s *sites) waitDuplex(t *testing.T) {
	t.Helper()
	waitFor(t, time.Minute, "every pair duplex", func() bool {
		vs := s.prim.Status().Volumes
		for _, v := range vs {
			if v.State != "duplex" {
				return false
			}
		}
		return len(vs) == layout.Volumes
	})
}

// quiesce ships everything the primary holds and waits until the secondary
// has applied it (it acknowledges a group once journaled, before applying).
func (s *sites) quiesce(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.prim.Mover().Quiesce(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the secondary to apply the last acknowledged group", func() bool {
		return s.sec.Replica().Stats().Group >= s.prim.Mover().Stats().Acked.Group
	})
}

// dependentSites starts the sites of a dependent-write test on the
// in-memory link, writes checked against lay on the secondary after every
// applied group, a short interval and a sidefile small enough that the
// clients meet pacing; it returns once every pair is duplex.
func dependentSites(t *testing.T, lay workload.Layout) (*sites, *transport.MemNetwork, *violations) {
	t.Helper()
	cfg := siteSession(t, t.TempDir(), func(c *config.Config) {
		c.Interval = config.Duration(2 * time.Millisecond)
		c.Primary.SidefileLimit = 2 * config.MiB
	})
	net := transport.NewMemNetwork(1, transport.Faults{})
	bad := &violations{}
	s := startSites(t, cfg, net, func(g *consistency.Group, read func(string, []byte, int64) error) {
		vs, err := workload.Check(lay, func(vol int, b []byte, off int64) error { return read(siteVolume(vol), b, off) })
		bad.add(g.Number, vs, err)
	})
	s.waitDuplex(t)
	return s, net, bad
}

// backgroundWorkload is a workload.Run of a test, until stop.
type backgroundWorkload struct {
	cancel context.CancelFunc
	done   chan error
	acked  int64 // the writes acknowledged, once stop returned
}

func startWorkload(t *testing.T, lay workload.Layout, target workload.Target, seed uint64) *backgroundWorkload {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := &backgroundWorkload{cancel: cancel, done: make(chan error, 1)}
	go func() {
		var err error
		w.acked, err = workload.Run(ctx, lay, target, 0, seed)
		w.done <- err
	}()
	return w
}

// stop ends the workload and fails the test if it failed.
func (w *backgroundWorkload) stop(t *testing.T) {
	t.Helper()
	w.cancel()
	if err := <-w.done; err != nil {
		t.Fatalf("workload: %v", err)
	}
}

func (s *sites) replicationState() string { return replicationState(s.prim.Mover(), s.sec.Replica()) }

// strikeSettleAndCompare ends a dependent-write test on the sites whose
// workload runs while the link has faults: it strikes each of them for a
// few groups, stops the workload (cancel, then its error from done), heals
// the link and, once everything is shipped, fails the test if a group
// applied broke the invariant or the sites' volumes differ. It returns the
// number of groups checked.
func (s *sites) strikeSettleAndCompare(t *testing.T, net *transport.MemNetwork, faults transport.Faults, bad *violations, lay workload.Layout,
	w *backgroundWorkload) int {
	t.Helper()
	strikeEveryFault(t, net, faults, func() {
		n, _ := bad.snapshot()
		waitGroups(t, bad, n+20, 30*time.Second, s.replicationState)
	})
	w.stop(t)
	net.SetFaults(transport.Faults{})
	s.quiesce(t)
	n, list := bad.snapshot()
	if len(list) > 0 {
		t.Fatalf("violations:\n%v", list)
	}
	assertConverged(t, lay.Volumes, lay.BlocksPerVolume, s.readPrimary, s.readSecondary)
	return n
}

// WriteAt makes the primary site a workload target: through the write path
// an NBD client's write takes.
func (s *sites) WriteAt(ctx context.Context, vol int, b []byte, off int64) error {
	return s.prim.Write(ctx, siteVolume(vol), b, off)
}

func (s *sites) readPrimary(vol int, b []byte, off int64) error {
	return s.prim.ReadAt(siteVolume(vol), b, off)
}

func (s *sites) readSecondary(vol int, b []byte, off int64) error {
	return s.sec.ReadAt(siteVolume(vol), b, off)
}

// TestSitesDependentWritesUnderLinkFaults is the dependent-write test on the
// daemons' wiring: 4 clients over 2 subsystems × 2 volumes write through
// site.Primary while the in-memory link drops, duplicates, reorders, delays
// and corrupts frames and disconnects. The invariant is checked on the
// secondary after every applied group, and both sites are byte-identical
// once the link heals and everything is shipped.
func TestSitesDependentWritesUnderLinkFaults(t *testing.T) {
	t.Parallel()
	groups := 300
	if testing.Short() {
		groups = 150
	}
	s, net, bad := dependentSites(t, layout)
	n0, _ := bad.snapshot()

	faults := transport.Faults{Drop: 0.02, Duplicate: 0.02, Reorder: 0.05, Corrupt: 0.02, Disconnect: 0.003, MaxDelay: time.Millisecond}
	net.SetFaults(faults)
	w := startWorkload(t, layout, s, 7)
	waitGroups(t, bad, n0+groups, 30*time.Second, s.replicationState)
	n := s.strikeSettleAndCompare(t, net, faults, bad, layout, w)
	fs := net.Stats()
	t.Logf("%d groups checked, 0 violations; %d writes acknowledged; link: %d frames, %d dropped, %d duplicated, %d reordered, %d corrupted, %d disconnects",
		n, w.acked, fs.Frames, fs.Dropped, fs.Duplicated, fs.Reordered, fs.Corrupted, fs.Disconnects)
	if fs.Dropped == 0 || fs.Duplicated == 0 || fs.Reordered == 0 || fs.Corrupted == 0 || fs.Disconnects == 0 {
		t.Fatalf("not every fault was injected: %+v", fs)
	}
	for _, v := range s.prim.Status().Volumes {
		if v.State != "duplex" {
			t.Errorf("volume %s is %s after the link healed, want duplex", v.Name, v.State)
		}
	}
}
