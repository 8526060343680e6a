package coupling

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
)

// noWritePassed checks that b's limit, and the group's recovery time if
// one is given, pass neither A (150), written to x after its add and not
// journaled at x's secondary, nor B (180), which depends on it.
func noWritePassed(ctx context.Context, t *testing.T, store Store, b *member, when string) {
	t.Helper()
	b.c.Round(ctx)
	if b.limit() >= 150 {
		t.Errorf("%s: b's limit %d: b applies B (180), which depends on A (150), and x's secondary has not journaled A", when, b.limit())
	}
	if rt, _, err := RecoveryTime(ctx, store, "b", b.limit()); err == nil && rt >= 150 {
		t.Errorf("%s: the group's recovery time %d: b recovers with B (180), x without A (150)", when, rt)
	}
}

// An add cut short whose moment etcd forgot (compacted) leaves writes of
// x made since its membership, which the others' master time has waited
// for, coupled already. Run again, duplex couple add took the others'
// times now (200) for x's floor, after a leave that for a moment made x
// no member at all: b applied B (180) and a group recovery named 200,
// while x's secondary held nothing past 50, not A (150), on which B
// depends. The add must not give a floor past what x's secondary
// journaled: it refuses, saying so; x's secondary finishes the add itself
// once it journaled past the others' time.
func TestAnAddWhoseMomentIsForgottenPassesNoWriteOfTheMemberNotJournaled(t *testing.T) {
	eachCutShortAdd(t, func(ctx context.Context, t *testing.T, store, cli Store, clk *clock, b, x *member) {
		forget(ctx, t, cli)
		x.c.Round(ctx)
		noWritePassed(ctx, t, store, b, "x's add forgotten")
		err := Add(ctx, cli, "x", clk.now())
		if err == nil || !strings.Contains(err.Error(), "journaled") || !strings.Contains(err.Error(), "duplex couple remove") {
			t.Errorf("duplex couple add of x, whose secondary journaled through 50 while the others are at 200: %v; "+
				"want it refused, saying what x's secondary journaled and that duplex couple remove uncouples it", err)
		}
		x.c.Round(ctx)
		noWritePassed(ctx, t, store, b, "duplex couple add run again")
		if st := x.c.Status(); !strings.Contains(st.AddUnfinished, "finishes the add once it journaled past") {
			t.Errorf("x's status while its secondary is behind the others: add unfinished %q, want it to say it waits for its secondary to journal", st.AddUnfinished)
		}
		if _, _, err := RecoveryTime(ctx, store, "b", b.limit()); err == nil || !strings.Contains(err.Error(), "duplex couple remove --config FILE x") {
			t.Errorf("a recovery while x's secondary is behind the others: %v, want it refused, saying how to recover without x", err)
		}

		// x's secondary journals A and on, past the others' time: its add
		// is finished, and the group advances.
		x.own.Store(250)
		x.c.Round(ctx)
		b.c.Round(ctx)
		rt, v := b.recovery(ctx, t, store, "b")
		if st := b.c.Status(); st.Held != "" || b.limit() < 200 || !v.given("x") || rt < b.limit() {
			t.Errorf("x's secondary journaled past the others: b held %q, b's limit %d, x's time %+v under membership %q, the recovery time %d; "+
				"want b applying through 200, x's time given, the recovery time no earlier than b's limit",
				st.Held, b.limit(), v.Reports["x"], v.Memberships["x"], rt)
		}
	})
}

// Finished by the member's secondary once it journaled past the others'
// time as it first saw them after the add, not as they are at each
// round: the others journal on, and a member whose secondary trails
// theirs would never reach their time now, its add never finished and
// the master time held for good. Their limits wait for the member
// meanwhile, so the time first seen stays past every one of them.
func TestAnAddWhoseMomentIsForgottenIsFinishedThoughTheOthersJournalOn(t *testing.T) {
	eachCutShortAdd(t, func(ctx context.Context, t *testing.T, store, cli Store, clk *clock, b, x *member) {
		forget(ctx, t, cli)
		x.c.Round(ctx)
		b.own.Store(400)
		b.c.Round(ctx)
		x.own.Store(300)
		x.c.Round(ctx)
		b.c.Round(ctx)
		rt, v := b.recovery(ctx, t, store, "b")
		if st := x.c.Status(); st.Held != "" || !v.given("x") || b.limit() < 300 || rt < b.limit() {
			t.Errorf("x journaled through 300, past the others' 200 when it first saw its add forgotten, b now at 400: "+
				"x held %q, x's time %+v under membership %q, b's limit %d, the recovery time %d; want x's add finished at 300, b applying through it",
				st.Held, v.Reports["x"], v.Memberships["x"], b.limit(), rt)
		}
		// A couple add run now finds nothing to do.
		if err := Add(ctx, cli, "x", clk.now()); err != nil {
			t.Errorf("duplex couple add of x once its secondary finished the add: %v", err)
		}
	})
}

// duplex couple add finishes an add whose moment etcd forgot when the
// member's secondary, stopped now, had published a time past the others':
// at that time, given under the membership the cut-short add made, and
// the group advances.
func TestCoupleAddFinishesAForgottenAddAtTheMembersOwnTime(t *testing.T) {
	eachCutShortAdd(t, func(ctx context.Context, t *testing.T, store, cli Store, clk *clock, b, x *member) {
		forget(ctx, t, cli)
		// What x's secondary published, not a member yet or behind, before it stopped.
		if err := cli.Publish(ctx, "x", Report{Time: 250, Journaled: 250, At: clk.now().UnixNano(), Membership: Outside}); err != nil {
			t.Fatal(err)
		}
		if err := Add(ctx, cli, "x", clk.now()); err != nil {
			t.Fatalf("duplex couple add of x, whose time 250 is past the others' 200: %v", err)
		}
		b.c.Round(ctx)
		rt, v := b.recovery(ctx, t, store, "b")
		if !v.given("x") || v.Reports["x"].Time != 250 || b.limit() != 200 || rt < b.limit() {
			t.Errorf("x's time %+v under membership %q, b's limit %d, the recovery time %d; want x given at 250, b applying through 200",
				v.Reports["x"], v.Memberships["x"], b.limit(), rt)
		}
	})
}

// A member whose forgotten add waits for its secondary to journal past
// the others' time applies meanwhile through the least of the members'
// times, its own the least: its journal holds every group it does not
// apply, and once full its secondary journals nothing more, never to
// reach the others' time. Its limit stayed where the add was cut short.
func TestAMemberWaitingToFinishAForgottenAddApplies(t *testing.T) {
	eachCutShortAdd(t, func(ctx context.Context, t *testing.T, store, cli Store, clk *clock, b, x *member) {
		forget(ctx, t, cli)
		x.own.Store(160)
		x.c.Round(ctx)
		st := x.c.Status()
		if x.limit() != 160 || st.Held != "" || !strings.Contains(st.AddUnfinished, "finishes the add once it journaled past") {
			t.Errorf("x journaled through 160, the others at 200: x's limit %d, held %q, add unfinished %q; "+
				"want x applying through 160, not held, and its status saying what its add waits for", x.limit(), st.Held, st.AddUnfinished)
		}
		x.own.Store(200)
		x.c.Round(ctx)
		if st := x.c.Status(); x.limit() != 200 || st.AddUnfinished != "" {
			t.Errorf("x journaled through 200: x's limit %d, add unfinished %q; want 200 and its add finished", x.limit(), st.AddUnfinished)
		}
	})
}

// A rejoin's join cut short the same way (its secondary killed between
// making the membership and publishing) and forgotten is finished by the
// same rule when the secondary starts again, its join owed: not before
// it journaled past the others' time, and only then recorded as done.
func TestAForgottenJoinIsFinishedOnceTheMemberJournaledPastTheOthers(t *testing.T) {
	eachCutShortAdd(t, func(ctx context.Context, t *testing.T, store, cli Store, clk *clock, b, x *member) {
		forget(ctx, t, cli)
		var joined atomic.Int64
		var own atomic.Int64
		c, err := New(Config{Store: store, Group: "g", Member: "x", Own: own.Load, Now: clk.now, Join: true,
			Joined: func() error { joined.Add(1); return nil }})
		if err != nil {
			t.Fatal(err)
		}
		own.Store(140)
		c.Round(ctx)
		noWritePassed(ctx, t, store, b, "x's join forgotten")
		if joined.Load() != 0 || c.Status().AddUnfinished == "" {
			t.Errorf("x journaled through 140, the others at 200: joined %d times, add unfinished %q; want the join owed still, and said so",
				joined.Load(), c.Status().AddUnfinished)
		}
		own.Store(210)
		c.Round(ctx)
		b.c.Round(ctx)
		rt, v := b.recovery(ctx, t, store, "b")
		if joined.Load() != 1 || !v.given("x") || b.limit() != 200 || rt < b.limit() {
			t.Errorf("x journaled through 210: joined %d times, x's time %+v under membership %q, b's limit %d, the recovery time %d; "+
				"want the join done once, x given, b applying through 200", joined.Load(), v.Reports["x"], v.Memberships["x"], b.limit(), rt)
		}
	})
}

// A member without a time whose add was cut short and forgotten is said to
// have published none, by duplex couple add run again and by a recovery:
// they said its secondary journaled through 1970-01-01T00:00:00Z.
func TestAForgottenAddOfAMemberWithoutATimeSaysItHasNone(t *testing.T) {
	ctx := context.Background()
	store, clk, b, _ := forgottenMemAdd(ctx, t, false)
	_, _, rerr := RecoveryTime(ctx, store, "b", b.limit())
	for what, err := range map[string]error{"duplex couple add run again": Add(ctx, store, "x", clk.now()), "a recovery": rerr} {
		if err == nil || strings.Contains(err.Error(), "journaled through 1970") || !strings.Contains(err.Error(), "published no time") {
			t.Errorf("%s, x without a time: %v; want it refused, saying x's secondary published no time", what, err)
		}
	}
}

// forgottenMemAdd is a cutShortAdd on a MemStore that then forgets the
// moment of x's add, as an etcd compaction.
func forgottenMemAdd(ctx context.Context, t *testing.T, outside bool) (store *MemStore, clk *clock, b, x *member) {
	t.Helper()
	store, clk = NewMemStore(), &clock{}
	clk.t.Store(1e18)
	store.Now = clk.now
	b, x = cutShortAdd(ctx, t, store, store, clk, outside)
	store.Forget()
	return store, clk, b, x
}
