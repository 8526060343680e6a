package site

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
	"duplex/failover"
)

// noUnfence is the real disk, except that the promotion record cannot be
// written, and from then on neither can the identity: the fence of the
// promotion that failed cannot be undone.
type noUnfence struct {
	disk.FS
	failed *atomic.Bool
}

func (f noUnfence) CreateTemp(dir, pattern string) (disk.File, error) {
	if strings.HasPrefix(pattern, "promotion.json") {
		f.failed.Store(true)
		return nil, errors.New("injected: no space left on device")
	}
	if strings.HasPrefix(pattern, "identity.json") && f.failed.Load() {
		return nil, errors.New("injected: no space left on device")
	}
	return f.FS.CreateTemp(dir, pattern)
}

// A promotion that fails after the fence, whose fence cannot be undone,
// leaves the secondary fenced and not promoted: it takes no writes from the
// primary, and serves none. The primary must not resume the writes as if
// nothing changed: it holds them, in doubt, and says that the other site
// is fenced.
func TestSwitchoverWithAFenceThatStaysHoldsTheWrites(t *testing.T) {
	cfg := switchoverConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := OpenSecondary(cfg, quiet, SecondaryOptions{FS: noUnfence{FS: disk.OS, failed: new(atomic.Bool)}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Primary.Secondary, cfg.Secondary.Control = s.ListenAddr(), s.ControlAddr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	p, _ := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	vols := cfg.VolumeNames()
	_, err = p.Switchover(context.Background(), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "in doubt") || !strings.Contains(err.Error(), "fenced") {
		t.Fatalf("the switchover with the secondary left fenced: %v, want it in doubt, saying the other site is fenced", err)
	}
	t.Logf("the switchover: %v", err)
	if _, fenced := s.Replica().Generation(); !fenced {
		t.Fatal("the secondary is not fenced: the test's fault did not fire")
	}
	if st := p.Status(); !strings.Contains(st.SwitchoverInDoubt, "fenced") {
		t.Errorf("status: switchover_in_doubt %q, want it to say the other site is fenced", st.SwitchoverInDoubt)
	}
	if _, err := failover.ReadSwitchover(nil, PairStateDir(cfg)); err != nil {
		t.Errorf("the switchover's record: %v, want it pending", err)
	}
	written := make(chan error, 1)
	go func() { written <- p.Write(context.Background(), vols[0], make([]byte, 4096), 0) }()
	select {
	case err := <-written:
		t.Fatalf("a write with the other site fenced and not promoted ended (%v): it must be held", err)
	case <-time.After(2 * time.Second):
	}
}
