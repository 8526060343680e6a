package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"duplex/control"
	"duplex/pair"
)

// startDrainOps starts an ops session of 4 MiB volumes, every pair duplex,
// whose sidefile (8 MiB) never fills and which never suspends itself, with
// its control address on loopback and its token "secret": what a suspend
// --drain over the control address needs.
func startDrainOps(t *testing.T) *opsSession {
	t.Helper()
	cfg := newOpsConfig(t, 4<<20, 8<<20, time.Hour)
	cfg.Primary.Control = "127.0.0.1:0"
	tokenPath := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenPath, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.ControlTokenFile = tokenPath
	s := startOps(t, cfg)
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	return s
}

// TestSuspendDrainWithLinkDownAnswers: `duplex pair suspend VOL --drain`
// while the link is down and the sidefile is not full (so the session never
// suspends itself) must answer within a bound, shipped or not, with the
// reason: the command has no timeout of its own, and an operator who asks
// to drain an unreachable link must not wait for ever without a word.
func TestSuspendDrainWithLinkDownAnswers(t *testing.T) {
	t.Parallel()
	s := startDrainOps(t)
	s.net.SetDown(true)
	if err := s.prim.Write(context.Background(), "vol1", make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	answered := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := control.PairOp(ctx, control.Endpoint{Addr: s.prim.ControlAddr()}, "secret", "vol1", "suspend", true)
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Logf("answered after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(30 * time.Second):
		s.net.SetDown(false)
		t.Fatalf("pair suspend vol1 --drain with the link down has not answered after 30s (the client has no timeout: it waits for ever)")
	}
	s.net.SetDown(false)
}
