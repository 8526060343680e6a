package site

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
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

// openNoUnfence opens a secondary of cfg on a noUnfence disk, and points
// cfg's primary at it.
func openNoUnfence(t *testing.T, cfg *config.Config) *Secondary {
	t.Helper()
	s, err := OpenSecondary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{FS: noUnfence{FS: disk.OS, failed: new(atomic.Bool)}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Primary.Secondary, cfg.Secondary.Control = s.ListenAddr(), s.ControlAddr()
	return s
}

// A promotion that fails after the fence, whose fence cannot be undone
// (as for a secondary that dies there), leaves the secondary fenced and not
// promoted: it takes no writes from the primary, and serves none. The
// primary must not resume the writes as if nothing changed: it holds them,
// in doubt, and says that the other site is fenced. The secondary's restart
// undoes the fence (promoting.json says a promotion was under way, and no
// record says it took effect): it never took over and no write reached its
// volumes. It then answers the primary's cancel, the held writes go on, and
// replication with them.
func TestSwitchoverWithAFenceThatStaysHoldsTheWritesUntilARestartUndoesIt(t *testing.T) {
	cfg := switchoverConfig(t)
	s := openNoUnfence(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-done
		}
	})

	p, _ := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	vols := cfg.VolumeNames()
	_, err := p.Switchover(context.Background(), time.Minute)
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
	want := bytes.Repeat([]byte{2}, 4096)
	written := make(chan error, 1)
	go func() { written <- p.Write(context.Background(), vols[1], want, 8192) }()
	select {
	case err := <-written:
		t.Fatalf("a write with the other site fenced and not promoted ended (%v): it must be held", err)
	case <-time.After(2 * time.Second):
	}

	// The secondary restarts, on a disk that works, at the same addresses.
	listen, ctl := s.ListenAddr(), s.ControlAddr()
	cancel()
	<-done
	stopped = true
	if _, err := failover.ReadPromotion(nil, PromotedDir(cfg)); !errors.Is(err, failover.ErrNotPromoted) {
		t.Fatalf("the promotion was recorded: %v", err)
	}
	scfg := *cfg
	scfg.Secondary.Listen, scfg.Secondary.Control = listen, ctl
	again := startSecondaryForSwitchover(t, &scfg)
	if _, fenced := again.Replica().Generation(); fenced {
		t.Fatal("the secondary restarted fenced: it refuses the primary for good")
	}
	select {
	case err := <-written:
		if err != nil {
			t.Fatalf("the held write, once the restarted secondary cancelled the promotion: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the held write did not go on within 2 minutes of the secondary's restart")
	}
	if st := p.Status(); st.SwitchoverInDoubt != "" {
		t.Errorf("status still says the switchover is in doubt: %q", st.SwitchoverInDoubt)
	}
	waitFor(t, time.Minute, "the primary to link again and the write to reach the secondary", func() bool {
		if p.Status().Link != "connected" {
			return false
		}
		got := make([]byte, 4096)
		if err := again.vols[vols[1]].ReadAt(got, 8192); err != nil {
			return false
		}
		return bytes.Equal(got, want)
	})
}
