package site

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"duplex/control"
)

// A promotion that failed after its fence, which could not be undone,
// leaves the site fenced with the marker of the promotion under way, which
// tells the next start to undo that fence (the site never took over).
// Recover's fence of the site meanwhile answers done ("it accepts no
// primary any more"): it is for good, and the next start must keep it.
// Undone, the old primary would replicate again over volumes the operator
// was told to use.
func TestRecoversFenceAfterAPromotionWhoseFenceStayedOutlivesARestart(t *testing.T) {
	cfg := switchoverConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := openNoUnfence(t, cfg)
	stopSecondary := runUntil(t, func(ctx context.Context) { s.Run(ctx) })
	p, stopPrimary := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	if _, err := p.Switchover(context.Background(), time.Minute); err == nil || !strings.Contains(err.Error(), "fenced") {
		t.Fatalf("the switchover with the secondary left fenced: %v, want it in doubt, the other site fenced", err)
	}
	// The primary is lost; the operator recovers at the secondary.
	stopPrimary()
	tok, err := control.ReadToken(cfg.TokenPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := control.FenceSecondary(context.Background(), control.Endpoint{Addr: s.ControlAddr()}, tok); err != nil {
		t.Fatalf("recover's fence: %v", err)
	}
	stopSecondary()

	again, err := OpenSecondary(cfg, quiet, SecondaryOptions{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, fenced := again.Replica().Generation(); !fenced {
		t.Error("recover's fence, answered done, was undone by the next start: the old primary is taken again")
	}
}
