package coupling

import (
	"context"
	"testing"
	"time"
)

// cutShortAdd is a group where b applies alone at 100, and x, whose
// secondary has journaled through 50 (published outside the group when
// outside is set, else never), is made a member by a duplex couple add
// that ends (a kill -9) before it publishes x's floor. Then a client
// writes A to x (stamped 150), and B to b (180), which depends on it; b's
// secondary journals B and publishes 200. x's secondary holds nothing
// past 50.
func cutShortAdd(ctx context.Context, t *testing.T, store, cli Store, clk *clock, outside bool) (b, x *member) {
	t.Helper()
	b = applyingAlone(ctx, t, store, clk, "b", 100)
	x = newMember(t, store, clk, "x", "")
	x.own.Store(50)
	if outside {
		x.c.Round(ctx)
	}
	if _, err := cli.AddMemberView(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	b.own.Store(200)
	b.c.Round(ctx)
	return b, x
}

// eachCutShortAdd runs test on a cutShortAdd of x without a time and of
// x with one published outside the group, on each store.
func eachCutShortAdd(t *testing.T, test func(ctx context.Context, t *testing.T, store, cli Store, clk *clock, b, x *member)) {
	for _, outside := range []bool{false, true} {
		t.Run(map[bool]string{false: "x without a time", true: "x's time published outside the group"}[outside], func(t *testing.T) {
			onEachStore(t, func(t *testing.T, store, cli Store) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				clk := &clock{}
				clk.t.Store(1e18)
				b, x := cutShortAdd(ctx, t, store, cli, clk, outside)
				test(ctx, t, store, cli, clk, b, x)
			})
		})
	}
}

// afterTheAdd checks what a group recovery of b and x finds once x's add
// was finished: a recovery time no earlier than what b applied (else b's
// volumes hold writes past it), and neither the time nor b's limit past
// A (150), which x's secondary does not hold, nor B (180), which depends
// on it; and the master time known (the group not stuck).
func afterTheAdd(ctx context.Context, t *testing.T, store Store, b *member) {
	t.Helper()
	b.c.Round(ctx)
	if st := b.c.Status(); st.Held != "" {
		t.Errorf("b's master time held once x's add was finished: %s", st.Held)
	}
	rt, v, err := RecoveryTime(ctx, store, "b", b.limit())
	if err != nil {
		t.Fatalf("the group's recovery time once x's add was finished: %v", err)
	}
	if rt < b.limit() || rt >= 150 || b.limit() >= 180 {
		t.Errorf("x's time %d, b's limit %d, the group's recovery time %d; want the time no earlier than b's limit, "+
			"and both before A (150), made on x after its add and not held there, and B (180), which depends on it",
			v.Reports["x"].Time, b.limit(), rt)
	}
	if !v.given("x") {
		t.Errorf("x's time %+v not given under its membership %q", v.Reports["x"], v.Memberships["x"])
	}
}

// duplex couple add killed between making the member and publishing its
// floor leaves a member without one. Run again, it must give the floor
// as of the add the first run made: the others' times then, which no
// write of x made since passes. It gave none where x had no time (the
// group stalled for good, its master time waiting for x's), and where x
// had one published outside the group it took the others' times as of
// the second run, past A, and b applied B.
func TestACutShortAddRunAgainGivesTheFloorAsOfTheAdd(t *testing.T) {
	eachCutShortAdd(t, func(ctx context.Context, t *testing.T, store, cli Store, clk *clock, b, x *member) {
		if err := Add(ctx, cli, "x", clk.now()); err != nil {
			t.Fatal(err)
		}
		afterTheAdd(ctx, t, store, b)
	})
}

// The member's own secondary, running after its add was cut short,
// finishes the add: it publishes no less than the floor as of the add. It
// published its own time, 50, for a time given under its membership
// (where it had none before) or left it outside the group, and a group
// recovery named 50, before what b had applied.
func TestTheMembersSecondaryFinishesACutShortAdd(t *testing.T) {
	eachCutShortAdd(t, func(ctx context.Context, t *testing.T, store, cli Store, clk *clock, b, x *member) {
		x.c.Round(ctx)
		afterTheAdd(ctx, t, store, b)
	})
}

// duplex recover --coupled run while an add is under way (the member
// made, its floor not yet published) counts the member at that floor, as
// the add will publish it: it counted the time x published outside the
// group, 50, before what b had applied, or refused for want of a time.
func TestARecoveryDuringAnAddCountsTheAddsFloor(t *testing.T) {
	eachCutShortAdd(t, func(ctx context.Context, t *testing.T, store, cli Store, clk *clock, b, x *member) {
		rt, _, err := RecoveryTime(ctx, store, "b", b.limit())
		if err != nil {
			t.Fatalf("recovery during x's add: %v", err)
		}
		if rt < b.limit() || rt >= 150 {
			t.Errorf("the group's recovery time %d during x's add, b's limit %d: want no earlier than b's limit and before A (150)", rt, b.limit())
		}
		// The add, finished, agrees.
		if err := Add(ctx, cli, "x", clk.now()); err != nil {
			t.Fatal(err)
		}
		if again, _, err := RecoveryTime(ctx, store, "b", b.limit()); err != nil || again != rt {
			t.Errorf("the recovery time %d, %v once the add was finished, want the one fixed during it, %d", again, err, rt)
		}
	})
}

// forget drops the store's history of the group, as an etcd compaction.
func forget(ctx context.Context, t *testing.T, store Store) {
	t.Helper()
	switch s := store.(type) {
	case *MemStore:
		s.Forget()
	case *EtcdStore:
		resp, err := s.cli.Get(ctx, "compact")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.cli.Compact(ctx, resp.Header.Revision); err != nil {
			t.Fatal(err)
		}
	}
}
