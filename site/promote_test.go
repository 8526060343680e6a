package site

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"duplex/failover"
)

// A promote killed after its fence, before it recorded the promotion, is
// run again: it promotes then, in the generation the fence started (the
// fence is not taken twice), and a third run promotes nothing more.
func TestPromoteAfterAKillBetweenFenceAndRecord(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	firstStart(t, cfg)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := OpenSecondary(cfg, quiet, SecondaryOptions{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Replica().Fence(); err != nil {
		t.Fatal(err)
	}
	fenced, _ := s.Replica().Generation()
	s.Close()
	if _, err := failover.ReadPromotion(nil, PromotedDir(cfg)); err != failover.ErrNotPromoted {
		t.Fatalf("before the promote: %v, want ErrNotPromoted", err)
	}

	pr, fresh, _, err := Promote(context.Background(), cfg, quiet, nil)
	if err != nil || !fresh {
		t.Fatalf("Promote after the fence: fresh %v, %v", fresh, err)
	}
	if pr.Generation != fenced {
		t.Errorf("the promotion's generation %s, want %s, the one the fence started", pr.Generation, fenced)
	}
	again, fresh, _, err := Promote(context.Background(), cfg, quiet, nil)
	if err != nil || fresh || again.At != pr.At {
		t.Errorf("a second Promote: fresh %v, promoted at %d (first %d), %v; want the first promotion kept", fresh, again.At, pr.At, err)
	}
	if _, err := OpenSecondary(cfg, quiet, SecondaryOptions{Offline: true}); err == nil {
		t.Error("a promoted site opened as a secondary")
	}
}

// The promoted site stamps after everything its volumes hold, even when the
// old primary's stamps led this site's clock.
func TestPromotedStampsFollowTheConsistencyTime(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	firstStart(t, cfg)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pr, _, _, err := Promote(context.Background(), cfg, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	pr.ConsistencyTime = time.Now().Add(time.Hour).UnixNano()
	if err := failover.WritePromotion(nil, PromotedDir(cfg), pr); err != nil {
		t.Fatal(err)
	}
	p, err := OpenPromoted(cfg, quiet, PromotedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if ts := p.timer.Now(); ts <= pr.ConsistencyTime {
		t.Errorf("the promoted site stamps %d, not after the consistency time %d", ts, pr.ConsistencyTime)
	}
}
