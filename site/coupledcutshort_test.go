package site

import (
	"context"
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
	store := coupling.NewMemStore()
	cfg := appliedAlone(t, store)
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
	pr, c := promoteCoupled(t, cfg, store)
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
	store := coupling.NewMemStore()
	cfg := appliedAlone(t, store)
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
	pr, c := promoteCoupled(t, cfg, old)
	if c.RecoveryTime != control.FormatTime(own) || c.AppliedThrough != c.RecoveryTime {
		t.Errorf("promoted at %s, its own time %s the group's: said to hold its writes through %s (the group's time %s)",
			control.FormatTime(pr.ConsistencyTime), control.FormatTime(own), c.AppliedThrough, c.RecoveryTime)
	}
}
