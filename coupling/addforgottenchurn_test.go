package coupling

import (
	"context"
	"testing"
)

// heldBack runs two rounds of each of ms, then checks, for a group where
// x's add was cut short and its moment forgotten, x's secondary having
// journaled through journaled: that no limit and no group recovery time
// passes a write of x made since its add (A, 150, the first) that x's
// secondary has not journaled, and that a recovery time is no earlier
// than what any member applied.
func heldBack(ctx context.Context, t *testing.T, store Store, journaled int64, when string, ms map[string]*member) {
	t.Helper()
	for range 2 {
		for _, m := range ms {
			m.c.Round(ctx)
		}
	}
	for name, m := range ms {
		if l := m.limit(); l >= 150 && l > journaled {
			v, _ := store.Read(ctx)
			t.Errorf("%s: %s's limit %d passes writes of x since its add that its secondary has not journaled (through %d); group %+v",
				when, name, l, journaled, v)
		}
	}
	for name, m := range ms {
		rt, _, err := RecoveryTime(ctx, store, name, m.limit())
		if err != nil {
			continue
		}
		if rt >= 150 && rt > journaled {
			t.Errorf("%s: the group's recovery time %d for %s passes what x's secondary journaled (%d)", when, rt, name, journaled)
		}
		for other, o := range ms {
			if rt < o.limit() {
				t.Errorf("%s: the group's recovery time %d for %s is before what %s applied (%d)", when, rt, name, other, o.limit())
			}
		}
	}
}

// x's secondary restarted while it waits to finish its forgotten add
// reads the others' time again, later than the first: it finishes the add
// later, never earlier, and meanwhile neither its restart, knowing less
// than it published, nor the others journaling on lets a limit pass what
// it journaled.
func TestAForgottenAddWaitsAcrossARestartOfTheMembersSecondary(t *testing.T) {
	eachCutShortAdd(t, func(ctx context.Context, t *testing.T, store, cli Store, clk *clock, b, x *member) {
		forget(ctx, t, cli)
		x.own.Store(160)
		x.c.Round(ctx)
		b.own.Store(400)
		heldBack(ctx, t, store, 160, "x behind", map[string]*member{"b": b, "x": x})
		x2 := newMember(t, store, clk, "x", "")
		x2.own.Store(155)
		heldBack(ctx, t, store, 160, "x restarted", map[string]*member{"b": b, "x": x2})
		x2.own.Store(450)
		heldBack(ctx, t, store, 450, "x caught up", map[string]*member{"b": b, "x": x2})
		if st := x2.c.Status(); st.AddUnfinished != "" || st.Held != "" || b.limit() < 400 {
			t.Errorf("x journaled through 450, past the others: add unfinished %q, held %q, b's limit %d", st.AddUnfinished, st.Held, b.limit())
		}
	})
}

// The others' time x's secondary read once stays the bar while members
// come and go: y added by a couple add that returns meanwhile (its floor
// the others' time, x's passed over) waits for x like b, and b leaving
// (a switchover) lowers no bar x must pass.
func TestAForgottenAddWhileAnotherJoinsAndLeaves(t *testing.T) {
	eachCutShortAdd(t, func(ctx context.Context, t *testing.T, store, cli Store, clk *clock, b, x *member) {
		forget(ctx, t, cli)
		x.own.Store(160)
		x.c.Round(ctx)
		y := newMember(t, store, clk, "y", "")
		y.own.Store(40)
		if err := Add(ctx, cli, "y", clk.now()); err != nil {
			t.Fatal(err)
		}
		all := map[string]*member{"b": b, "x": x, "y": y}
		heldBack(ctx, t, store, 160, "y added", all)
		y.own.Store(300)
		b.own.Store(320)
		heldBack(ctx, t, store, 160, "y and b journaled on", all)
		v, err := cli.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := cli.Leave(ctx, "b", v.Memberships["b"]); err != nil {
			t.Fatal(err)
		}
		delete(all, "b")
		heldBack(ctx, t, store, 160, "b left", all)
		x.own.Store(210)
		heldBack(ctx, t, store, 210, "x past the others' time it first read", all)
		x.own.Store(310)
		heldBack(ctx, t, store, 310, "x past y", all)
		if st := x.c.Status(); st.AddUnfinished != "" || st.Held != "" || y.limit() < 300 {
			t.Errorf("x journaled through 310: add unfinished %q, held %q, y's limit %d", st.AddUnfinished, st.Held, y.limit())
		}
	})
}

// Two members whose adds were cut short and forgotten at once pass each
// other over in the others' time they wait for, and each holds the
// others' limits within what it journaled until it finished.
func TestTwoForgottenAddsAtOnce(t *testing.T) {
	eachCutShortAdd(t, func(ctx context.Context, t *testing.T, store, cli Store, clk *clock, b, x *member) {
		w := newMember(t, store, clk, "w", "")
		w.own.Store(60)
		w.c.Round(ctx)
		if _, err := cli.AddMemberView(ctx, "w"); err != nil {
			t.Fatal(err)
		}
		// A write after w's add, so that the compaction passes it.
		b.own.Store(201)
		b.c.Round(ctx)
		forget(ctx, t, cli)
		x.own.Store(160)
		w.own.Store(170)
		all := map[string]*member{"b": b, "x": x, "w": w}
		heldBack(ctx, t, store, 160, "both behind", all)
		x.own.Store(250)
		heldBack(ctx, t, store, 250, "x past, w behind", all)
		if b.limit() > 170 {
			t.Errorf("b's limit %d past what w journaled (170) while w's add waits", b.limit())
		}
		w.own.Store(260)
		heldBack(ctx, t, store, 250, "both past", all)
		for name, m := range all {
			if st := m.c.Status(); st.AddUnfinished != "" || st.Held != "" {
				t.Errorf("%s once both adds were finished: add unfinished %q, held %q", name, st.AddUnfinished, st.Held)
			}
		}
		if b.limit() < 201 {
			t.Errorf("b's limit %d once both adds were finished, want its own time 201", b.limit())
		}
	})
}

// etcd unreachable while x waits holds x's limit, as any round's failure
// does, and x finishes its add once etcd answers.
func TestAForgottenAddWaitsOutAnUnreachableStore(t *testing.T) {
	ctx := context.Background()
	store, _, b, x := forgottenMemAdd(ctx, t, true)
	x.own.Store(160)
	x.c.Round(ctx)
	store.SetDown(true)
	x.own.Store(250)
	x.c.Round(ctx)
	if st := x.c.Status(); st.Held == "" || x.limit() > 160 {
		t.Errorf("x's round with etcd down: held %q, limit %d; want held at 160", st.Held, x.limit())
	}
	store.SetDown(false)
	heldBack(ctx, t, store, 250, "etcd back", map[string]*member{"b": b, "x": x})
	if st := x.c.Status(); st.AddUnfinished != "" || st.Held != "" || b.limit() < 200 {
		t.Errorf("etcd back, x past the others: add unfinished %q, held %q, b's limit %d", st.AddUnfinished, st.Held, b.limit())
	}
}
