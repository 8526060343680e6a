package e2e

import (
	"testing"
	"time"

	"duplex/pair"
)

// TestStalledSecondarySuspendsAndResumes: a secondary that stops reading
// (its process stopped, its disk hung) while its connection stays up
// counts as a link down: under load, the session suspends into bitmaps once
// suspend_after has passed with a full sidefile, writes go on, and once the
// secondary reads again the pairs resync and converge.
func TestStalledSecondarySuspendsAndResumes(t *testing.T) {
	t.Parallel()
	const volSize = 32 << 20
	s := startOps(t, newOpsConfig(t, volSize, 1<<20, 500*time.Millisecond))
	for _, name := range s.cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	stop := make(chan struct{})
	wg, n := s.load(stop, 7, volSize)
	time.Sleep(100 * time.Millisecond)
	s.net.SetStalled(true)
	stalled := time.Now()
	for _, name := range s.cfg.VolumeNames() {
		if p := s.waitStateOr(name, pair.Suspended, 30*time.Second); p.State != pair.Suspended {
			s.net.SetStalled(false)
			t.Fatalf("%s is %s 30s after the secondary stopped reading (suspend_after 500ms, silence 5s): the session never saw the link down; link %q, last error %q",
				name, p.State, s.prim.Status().Link, s.prim.Mover().Stats().LastError)
		}
	}
	t.Logf("suspended %v after the secondary stopped reading; last error: %s", time.Since(stalled).Round(time.Millisecond), s.prim.Mover().Stats().LastError)
	before := n.Load()
	waitFor(t, 10*time.Second, "writes to continue while suspended", func() bool { return n.Load() > before+100 })
	s.net.SetStalled(false)
	for _, name := range s.cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	close(stop)
	wg.Wait()
	s.assertImagesEqual()
}
