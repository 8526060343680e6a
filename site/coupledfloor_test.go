package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/coupling"
	"duplex/failover"
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
	store := coupling.NewMemStore()
	cfg := appliedAlone(t, store)
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
	pr, c := promoteCoupled(t, cfg, store)
	if c.RecoveryTime != control.FormatTime(ahead) {
		t.Errorf("the group's time %s, want the other member's %s", c.RecoveryTime, control.FormatTime(ahead))
	}
	if c.AppliedThrough == c.RecoveryTime {
		t.Errorf("promoted holding its writes through %s only, said to be at the group's time %s", control.FormatTime(pr.ConsistencyTime), c.AppliedThrough)
	}
}

// appliedAlone makes session "new" the one member of a coupled group in
// store, has its primary write and its secondary apply that write, stops
// both sites, and returns its config.
func appliedAlone(t *testing.T, store coupling.Store) *config.Config {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
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
	return cfg
}

// promoteCoupled promotes the secondary of cfg at the time of its group in
// store, and returns the promotion and what it says of the group.
func promoteCoupled(t *testing.T, cfg *config.Config, store coupling.Store) (failover.Promotion, *control.CouplingStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, fresh, recovered, err := PromoteWith(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PromoteOptions{CouplingStore: store})
	if err != nil {
		t.Fatal(err)
	}
	c := recovered.Coupling
	if !fresh || pr.ConsistencyTime == 0 || c == nil {
		t.Fatalf("promoted (fresh %v) at %d, coupling %+v: want a fresh promotion of a member that applied a group", fresh, pr.ConsistencyTime, c)
	}
	return pr, c
}
