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

// A member whose add was cut short before it published its floor, with no
// time of its own in the group (its last one left with its membership), is
// counted by a recovery at the floor as of the add, past what its
// secondary journaled. Promoted at the group's time then, it holds its
// own writes only through the last group it applied: it must not be said
// to be at the group's time, as it was, from a time it journaled through
// that it never published (taken as unknown, and the group's time named).
func TestAMemberWhoseAddWasCutShortIsNotSaidToHoldTheFloor(t *testing.T) {
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
	// It leaves, membership and time (a switchover's leave); another
	// member runs on, far ahead; then duplex couple add of "new" makes
	// the membership and is killed before it publishes the floor.
	v, err := store.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Leave(ctx, "new", v.Memberships["new"]); err != nil {
		t.Fatal(err)
	}
	ahead := time.Now().Add(time.Hour).UnixNano()
	if err := coupling.Add(ctx, store, "other", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := store.Publish(ctx, "other", coupling.Report{Time: ahead, At: time.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.AddMemberView(ctx, "new"); err != nil {
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
		t.Errorf("the group's time %s, want the add's floor, the other member's time %s", c.RecoveryTime, control.FormatTime(ahead))
	}
	if c.AppliedThrough != control.FormatTime(pr.ConsistencyTime) {
		t.Errorf("promoted holding its writes through %s only, said to hold them through %s (the group's time %s)",
			control.FormatTime(pr.ConsistencyTime), c.AppliedThrough, c.RecoveryTime)
	}
}

// A member whose time carries no journaled time because it was published
// before that was kept, and whose secondary journaled through it, is said
// to be at the group's time once promoted there: 0 says "only what it
// applied", and what it applied reaches the group's time.
func TestAMemberWithNoJournaledTimeAtTheGroupsTimeIsSaidToBeThere(t *testing.T) {
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
	v, err := store.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	own := v.Reports["new"].Time
	old := coupling.NewMemStore()
	if err := old.AddMember(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	if err := old.Publish(ctx, "new", coupling.Report{Time: own, At: time.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pr, fresh, recovered, err := PromoteWith(pctx, cfg, quiet, PromoteOptions{CouplingStore: old})
	if err != nil {
		t.Fatal(err)
	}
	c := recovered.Coupling
	if !fresh || pr.ConsistencyTime == 0 || c == nil {
		t.Fatalf("promoted (fresh %v) at %d, coupling %+v: want a fresh promotion of a member that applied a group", fresh, pr.ConsistencyTime, c)
	}
	if c.RecoveryTime != control.FormatTime(own) || c.AppliedThrough != c.RecoveryTime {
		t.Errorf("promoted at %s, its own time %s the group's: said to hold its writes through %s (the group's time %s)",
			control.FormatTime(pr.ConsistencyTime), control.FormatTime(own), c.AppliedThrough, c.RecoveryTime)
	}
}
