package site

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"duplex/failover"
)

// A running secondary that could not serve once promoted (here its control
// token, read by the promoted site at open, is gone since it started) must
// refuse a switchover's promotion before it fences or records anything, as
// duplex promote does (CheckServe): otherwise it records the promotion,
// cannot serve, and the session has no primary that takes writes.
func TestPromoteInPlaceChecksItCanServeFirst(t *testing.T) {
	cfg := switchoverConfig(t)
	sec := startSecondaryForSwitchover(t, cfg)
	p, _ := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	if err := os.Remove(cfg.TokenPath()); err != nil {
		t.Fatal(err)
	}
	_, err := p.Switchover(context.Background(), time.Minute)
	if err == nil {
		t.Fatal("the switchover went through to a site that cannot serve")
	}
	t.Logf("the switchover: %v", err)
	if !strings.Contains(err.Error(), "writes resume") {
		t.Errorf("the switchover's error %q does not say the writes resume", err)
	}
	if _, err := failover.ReadPromotion(nil, PromotedDir(cfg)); !errors.Is(err, failover.ErrNotPromoted) {
		t.Fatalf("promotion record: %v, want none", err)
	}
	if _, fenced := sec.Replica().Generation(); fenced {
		t.Error("the secondary is fenced after a promotion it refused")
	}
	if err := p.Write(context.Background(), cfg.VolumeNames()[0], make([]byte, 4096), 0); err != nil {
		t.Fatalf("a write after the refused switchover: %v", err)
	}
}
