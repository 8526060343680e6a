package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"duplex/pair"
	"duplex/transport"
)

// TestLinkDownDuringInitialCopySuspendsOnTime starts the primary with data to
// copy while the link is down: the copy fills the sidefile, and the session
// must still suspend itself after suspend_after, so that writes go on (into
// bitmaps) instead of waiting for the link. When the link returns, the pairs
// copy and converge.
func TestLinkDownDuringInitialCopySuspendsOnTime(t *testing.T) {
	const volSize = 16 << 20
	cfg := newOpsConfig(t, volSize, 1<<20, 300*time.Millisecond)
	pv, _, _ := cfg.PrimaryVolume("vol1")
	if err := os.MkdirAll(filepath.Dir(pv.Path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(pv.Path)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(volSize)
	chunk := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 8 {
		for j := range chunk {
			chunk[j] = byte(rng.Uint32())
		}
		f.WriteAt(chunk, int64(i)*2<<20)
	}
	f.Close()

	s := &opsSession{t: t, cfg: cfg, net: transport.NewMemNetwork(4, transport.Faults{})}
	s.net.SetDown(true)
	s.startSecondary()
	s.startPrimary()
	t.Cleanup(func() {
		s.stopPrimary()
		s.stopSecondary()
	})
	waitFor(t, 10*time.Second, "the copy to fill the sidefile", func() bool {
		st := s.prim.Status()
		return *st.SidefileBytes > 512<<10
	})
	wrote := make(chan error, 1)
	go func() {
		wrote <- s.prim.Write(context.Background(), "vol1", make([]byte, 4096), 12<<20)
	}()
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Suspended, 15*time.Second)
	}
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("write during the outage: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a write still waits 15s after the session suspended itself")
	}
	s.net.SetDown(false)
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	s.assertImagesEqual()
}

// TestAutoSuspendKeepsHeldWritesOfPairSuspendedByHand suspends one pair by
// hand while the link is down and its updates are held: the session's own
// suspension then drops everything held, and the regions of those updates
// must be in that pair's bitmap, or its resume leaves the secondary without
// them.
func TestAutoSuspendKeepsHeldWritesOfPairSuspendedByHand(t *testing.T) {
	t.Parallel()
	const volSize = 64 << 20
	s := startOps(t, newOpsConfig(t, volSize, 1<<20, 2*time.Second))
	for _, name := range s.cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	stop := make(chan struct{})
	wg, _ := s.load(stop, 11, volSize)
	time.Sleep(50 * time.Millisecond)
	s.net.SetDown(true)
	waitFor(t, 10*time.Second, "updates held while the link is down", func() bool {
		return *s.prim.Status().SidefileBytes > 64<<10
	})
	if st := s.pairs()["vol1"].State; st != pair.Duplex {
		t.Fatalf("vol1 is %s before it is suspended by hand (suspend_after too short for this machine?)", st)
	}
	if err := s.prim.Pairs().Suspend("vol1"); err != nil {
		t.Fatal(err)
	}
	for _, name := range s.cfg.VolumeNames() {
		s.waitState(name, pair.Suspended, 30*time.Second)
	}
	close(stop)
	wg.Wait()
	s.net.SetDown(false)
	if err := s.prim.Pairs().Resume("vol1"); err != nil {
		t.Fatal(err)
	}
	for _, name := range s.cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	s.assertImagesEqual()
}

// TestResumeWithNothingToCopy resumes a pair that saw no write while it was
// suspended: it has nothing to copy, and must be duplex again all the same.
func TestResumeWithNothingToCopy(t *testing.T) {
	t.Parallel()
	s := startOps(t, newOpsConfig(t, 4<<20, 1<<20, time.Minute))
	for _, name := range s.cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	if err := s.prim.Pairs().Suspend("vol2"); err != nil {
		t.Fatal(err)
	}
	if err := s.prim.Pairs().Resume("vol2"); err != nil {
		t.Fatal(err)
	}
	s.waitState("vol2", pair.Duplex, 15*time.Second)
	s.assertImagesEqual()
}
