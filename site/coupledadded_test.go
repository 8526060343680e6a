package site

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"duplex/coupling"
)

// A session added by couple add to a running group publishes the others'
// master time as its own (coupling.Add) before its secondary journaled
// anything. Promoted at the group's recovery time, that time, with its
// secondary started but never linked, it holds no replicated data: the promotion
// must not name the group's time as one it applied through, as it did.
// It is promoted at once, without waiting for its secondary.
func TestAddedMemberNeverStartedIsNotPromotedAtTheGroupsTime(t *testing.T) {
	ctx := context.Background()
	store := coupling.NewMemStore()
	if err := coupling.Add(ctx, store, "other", time.Now()); err != nil {
		t.Fatal(err)
	}
	floor := time.Now().UnixNano()
	if err := store.Publish(ctx, "other", coupling.Report{Time: floor, At: time.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	cfg := coupledConfig(t, "new")
	if err := coupling.Add(ctx, store, "new", time.Now()); err != nil {
		t.Fatal(err)
	}
	if v, _ := store.Read(ctx); v.Reports["new"].Time != floor {
		t.Fatalf("the added member published %d, want the other's time %d", v.Reports["new"].Time, floor)
	}
	firstStart(t, cfg)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pr, fresh, recovered, err := PromoteWith(pctx, cfg, quiet, PromoteOptions{CouplingStore: store})
	if err != nil {
		t.Fatal(err)
	}
	if !fresh || pr.ConsistencyTime != 0 {
		t.Fatalf("promoted (fresh %v) at %d, want a fresh promotion holding no group", fresh, pr.ConsistencyTime)
	}
	if c := recovered.Coupling; c != nil {
		t.Errorf("promoted holding no group, said to have applied through the group's time %s", c.AppliedThrough)
	}
}
