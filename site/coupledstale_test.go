package site

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"duplex/control"
)

// The group's recovery time is fixed in etcd by the first member that
// recovers, and stays there: after that incident the group is rejoined
// and runs on, its members applying far past it. At the next failover a
// member promoted (or recovered with --coupled) at that old time cannot
// go back to it (its volumes are past it) and ends where it is, each
// member at its own time, while promote says they are all at the old one.
// A recovery time before what a member applied through is of an earlier
// incident (in one, no member applies past it: every master time is at or
// before the minimum of the published times it is fixed at): it is fixed
// again, from the times published now.
func TestCoupledPromotionAfterAnEarlierRecoveryFixesTheTimeAgain(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := holdPastTheMasterTime(t, cfg, quiet)
	ctx := context.Background()
	// An earlier incident's recovery time, before all this.
	stale := h.other - int64(time.Minute)
	if _, err := h.store.FixRecovery(ctx, stale); err != nil {
		t.Fatal(err)
	}
	// The other member recovers past the writes; the group goes on.
	if err := h.store.RemoveMember(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the writes applied", func() bool {
		return h.sec.Replica().Stats().Group >= h.prim.Mover().Stats().Acked.Group
	})
	applied := h.sec.Replica().Stats().Time
	h.stopPrim()
	h.stopSec()

	pr, _, recovered, err := PromoteWith(ctx, cfg, quiet, PromoteOptions{CouplingStore: h.store})
	if err != nil {
		t.Fatal(err)
	}
	if recovered.Coupling == nil {
		t.Fatal("the promotion names no group time")
	}
	got, err := time.Parse(time.RFC3339Nano, recovered.Coupling.RecoveryTime)
	if err != nil {
		t.Fatal(err)
	}
	if got.UnixNano() < applied || pr.ConsistencyTime > got.UnixNano() {
		t.Errorf("promoted at %s, the group's time said to be %s: the earlier incident's (%s), before what the secondary applied (%s)",
			control.FormatTime(pr.ConsistencyTime), recovered.Coupling.RecoveryTime, control.FormatTime(stale), control.FormatTime(applied))
	}
}
