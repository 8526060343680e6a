package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"duplex/control"
	"duplex/coupling"
)

// A member added again to its group (couple add after a remove, or a
// rejoin) starts at the others' time, its floor, which may be past what
// its secondary journaled: its writes stamped between were made before it
// was coupled, and are not there. Promoted at the group's time then, it
// holds its own writes only through the time it journaled: it must not be
// said to be at the group's time, as it was, while a member that was only
// quiet is (TestCoupledPromote*).
func TestAMemberBehindItsFloorIsNotSaidToHoldTheGroupsTime(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := coupling.NewMemStore()
	cfg := coupledConfig(t, "new")
	if err := coupling.Add(ctx, store, "new", time.Now()); err != nil {
		t.Fatal(err)
	}
	_, sec, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{CouplingStore: store})
	if err := prim.Write(ctx, "vol1", bytes.Repeat([]byte{0x5a}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	written := time.Now().UnixNano()
	waitFor(t, time.Minute, "the write applied", func() bool {
		st := sec.Status()
		if st.Coupling == nil || st.Coupling.AppliedThrough == "" {
			return false
		}
		at, err := time.Parse(time.RFC3339Nano, st.Coupling.AppliedThrough)
		return err == nil && at.UnixNano() > written
	})
	stopPrim()
	stopSec()
	if err := store.RemoveMember(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	ahead := time.Now().Add(time.Hour).UnixNano()
	if err := store.AddMember(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if err := store.Publish(ctx, "other", coupling.Report{Time: ahead, At: time.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	if err := coupling.Add(ctx, store, "new", time.Now()); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pr, fresh, recovered, err := PromoteWith(pctx, cfg, quiet, PromoteOptions{CouplingStore: store})
	if err != nil {
		t.Fatal(err)
	}
	c := recovered.Coupling
	if !fresh || pr.ConsistencyTime == 0 || c == nil {
		t.Fatalf("promoted (fresh %v) at %d, coupling %+v: want a fresh promotion of a member that applied a group", fresh, pr.ConsistencyTime, c)
	}
	if c.RecoveryTime != control.FormatTime(ahead) {
		t.Errorf("the group's time %s, want the other member's %s", c.RecoveryTime, control.FormatTime(ahead))
	}
	if c.AppliedThrough == c.RecoveryTime {
		t.Errorf("promoted holding its writes through %s only, said to be at the group's time %s", control.FormatTime(pr.ConsistencyTime), c.AppliedThrough)
	}
}
