package coupling

import (
	"context"
	"slices"
	"testing"
	"time"
)

// A leave that etcd did not answer is tried again later (the switchover's
// leave owed), and meanwhile the session may have become a member again:
// duplex couple add, or a rejoin after the leave did reach etcd but its
// answer was lost. The leave tried again takes out only the membership it
// was meant for; it removed the new one, and the session's time with it,
// so that the group's master time no longer waited for a member whose
// writes were coupled with the others'.
func TestALeaveTakesOutOnlyTheMembershipItWasMeantFor(t *testing.T) {
	onEachStore(t, func(t *testing.T, store, _ Store) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		clk := &clock{}
		clk.t.Store(1e18)
		for _, m := range []string{"a", "b"} {
			if err := Add(ctx, store, m, clk.now()); err != nil {
				t.Fatal(err)
			}
		}
		a, b := newMember(t, store, clk, "a", ""), newMember(t, store, clk, "b", "")
		a.own.Store(100)
		b.own.Store(150)
		a.c.Round(ctx)
		b.c.Round(ctx)
		// The leave does not reach etcd.
		gone, stop := context.WithCancel(ctx)
		stop()
		if err := a.c.Leave(gone); err == nil {
			t.Fatal("a leave with its context ended succeeded")
		}
		// The session is a member again, as a new one.
		if err := store.RemoveMember(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if err := Add(ctx, store, "a", clk.now()); err != nil {
			t.Fatal(err)
		}
		// The leave owed is tried again.
		if err := a.c.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		v, err := store.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(v.Members, "a") || v.Reports["a"].Time < 150 {
			t.Fatalf("after the old leave was tried again: members %v, a's time %d; want a a member still, at the floor 150 its add gave it",
				v.Members, v.Reports["a"].Time)
		}
	})
}
