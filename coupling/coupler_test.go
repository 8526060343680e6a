package coupling

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct{ t atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

type member struct {
	c   *Coupler
	own atomic.Int64
}

func newMember(t *testing.T, store Store, clk *clock, name, mark string) *member {
	t.Helper()
	m := &member{}
	c, err := New(Config{Store: store, Group: "g", Member: name, Own: m.own.Load, Now: clk.now, MarkPath: mark, MarkEvery: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	m.c = c
	return m
}

func (m *member) limit() int64 { l, _ := m.c.Limit(); return l }

// recovery is the group's recovery time for m, named name in store, with
// m's limit as what its secondary applied, and the view it was read from.
func (m *member) recovery(ctx context.Context, t *testing.T, store Store, name string) (int64, View) {
	t.Helper()
	rt, v, err := RecoveryTime(ctx, store, name, m.limit())
	if err != nil {
		t.Fatalf("the group's recovery time for %s: %v", name, err)
	}
	return rt, v
}

// applyingAlone adds member name to store's group, which has no other,
// and has it publish own and apply through it.
func applyingAlone(ctx context.Context, t *testing.T, store Store, clk *clock, name string, own int64) *member {
	t.Helper()
	if err := Add(ctx, store, name, clk.now()); err != nil {
		t.Fatal(err)
	}
	m := newMember(t, store, clk, name, "")
	m.own.Store(own)
	m.c.Round(ctx)
	if m.limit() != own {
		t.Fatalf("%s's limit %d alone in the group, want %d", name, m.limit(), own)
	}
	return m
}

// twoMembers is a group of members a and b on a clock of the test's.
func twoMembers(t *testing.T) (*MemStore, *clock, *member, *member) {
	t.Helper()
	store, clk := NewMemStore(), &clock{}
	clk.t.Store(1e18)
	store.Now = clk.now
	store.AddMember(context.Background(), "a")
	store.AddMember(context.Background(), "b")
	return store, clk, newMember(t, store, clk, "a", ""), newMember(t, store, clk, "b", "")
}

func TestMasterTimeIsTheMinimumOverTheMembers(t *testing.T) {
	ctx := context.Background()
	store, clk, a, b := twoMembers(t)
	a.own.Store(100)
	a.c.Round(ctx)
	if got := a.limit(); got != 0 {
		t.Fatalf("limit %d before b published, want 0", got)
	}
	if st := a.c.Status(); st.Laggard != "b" || !strings.Contains(st.Held, "member b has published no time") {
		t.Fatalf("status %+v: want b named as the laggard that never published", st)
	}
	_, changed := a.c.Limit()
	b.own.Store(80)
	b.c.Round(ctx)
	a.c.Round(ctx)
	select {
	case <-changed:
	default:
		t.Fatal("the limit rose but its channel was not closed")
	}
	if got := a.limit(); got != 80 {
		t.Fatalf("limit %d, want 80 (the minimum)", got)
	}
	if st := a.c.Status(); st.Master != 80 || st.Laggard != "b" || st.Held != "" {
		t.Fatalf("status %+v", st)
	}

	// b goes silent: the master time holds at its last time, and status
	// says for how long; once its lease expires, that it is gone.
	clk.advance(5 * time.Second)
	a.own.Store(500)
	a.c.Round(ctx)
	st := a.c.Status()
	if st.Master != 80 || a.limit() != 80 || st.Laggard != "b" || st.Silent != 5*time.Second || st.Gone {
		t.Fatalf("silent b: status %+v, limit %d; want master 80 held, b silent 5s", st, a.limit())
	}
	store.Expire("b")
	a.c.Round(ctx)
	if st := a.c.Status(); !st.Gone || st.Master != 80 {
		t.Fatalf("expired b: status %+v, want gone and master 80 held", st)
	}

	// Removing b from the group lets a run alone.
	store.RemoveMember(ctx, "b")
	a.c.Round(ctx)
	if got := a.limit(); got != 500 {
		t.Fatalf("limit %d after b was removed, want 500", got)
	}
}

func TestLosingTheStoreHoldsTheLimit(t *testing.T) {
	ctx := context.Background()
	store, clk := NewMemStore(), &clock{}
	store.AddMember(ctx, "a")
	a := newMember(t, store, clk, "a", "")
	a.own.Store(10)
	a.c.Round(ctx)
	if a.limit() != 10 {
		t.Fatalf("limit %d, want 10", a.limit())
	}
	store.SetDown(true)
	a.own.Store(20)
	a.c.Round(ctx)
	st := a.c.Status()
	if a.limit() != 10 || !strings.Contains(st.Held, "etcd unreachable") || st.HeldSince.IsZero() {
		t.Fatalf("store down: limit %d, status %+v; want 10 held and why", a.limit(), st)
	}
	store.SetDown(false)
	a.c.Round(ctx)
	if st := a.c.Status(); a.limit() != 20 || st.Held != "" {
		t.Fatalf("store back: limit %d, status %+v; want 20", a.limit(), st)
	}
}

func TestNotAMemberHolds(t *testing.T) {
	ctx := context.Background()
	store, clk := NewMemStore(), &clock{}
	store.AddMember(ctx, "b")
	a := newMember(t, store, clk, "a", "")
	a.own.Store(10)
	a.c.Round(ctx)
	if st := a.c.Status(); a.limit() != 0 || !strings.Contains(st.Held, "duplex couple add --config FILE a") {
		t.Fatalf("limit %d, status %+v: want held, pointing at duplex couple add", a.limit(), st)
	}
}

func TestPublishedTimeNeverLowers(t *testing.T) {
	ctx := context.Background()
	store, clk := NewMemStore(), &clock{}
	store.AddMember(ctx, "a")
	a := newMember(t, store, clk, "a", "")
	a.own.Store(100)
	a.c.Round(ctx)
	// A restart knows only its last journaled group's time.
	again := newMember(t, store, clk, "a", "")
	again.own.Store(60)
	again.c.Round(ctx)
	v, _ := store.Read(ctx)
	if got := v.Reports["a"].Time; got != 100 {
		t.Fatalf("published %d after a restart that knew 60, want 100 kept", got)
	}
}

func TestMarkOutlivesARestart(t *testing.T) {
	ctx := context.Background()
	store, clk := NewMemStore(), &clock{}
	store.AddMember(ctx, "a")
	path := filepath.Join(t.TempDir(), "coupling.json")
	a := newMember(t, store, clk, "a", path)
	a.own.Store(77)
	a.c.Round(ctx)
	store.SetDown(true)
	again := newMember(t, store, clk, "a", path)
	if got := again.limit(); got != 77 {
		t.Fatalf("limit %d after a restart with etcd down, want the persisted 77", got)
	}
	_, err := New(Config{Store: store, Group: "other", Member: "a", Own: a.own.Load, MarkPath: path})
	if err == nil || !strings.Contains(err.Error(), `belongs to group "g"`) {
		t.Fatalf("a mark of another group: %v", err)
	}
}

func TestRecoveryTimeIsFixedOnce(t *testing.T) {
	ctx := context.Background()
	store, clk := NewMemStore(), &clock{}
	store.AddMember(ctx, "a")
	store.AddMember(ctx, "b")
	a, b := newMember(t, store, clk, "a", ""), newMember(t, store, clk, "b", "")
	a.own.Store(50)
	a.c.Round(ctx)
	if _, _, err := RecoveryTime(ctx, store, "a", 0); err == nil || !strings.Contains(err.Error(), "member b never published") {
		t.Fatalf("recovery with b unknown: %v", err)
	}
	b.own.Store(40)
	b.c.Round(ctx)
	got, _, err := RecoveryTime(ctx, store, "a", 0)
	if err != nil || got != 40 {
		t.Fatalf("recovery time %d, %v; want 40", got, err)
	}
	b.own.Store(90)
	b.c.Round(ctx)
	a.own.Store(95)
	a.c.Round(ctx)
	if got, _, err := RecoveryTime(ctx, store, "b", 0); err != nil || got != 40 {
		t.Fatalf("second member's recovery time %d, %v; want the same 40", got, err)
	}
	if _, _, err := RecoveryTime(ctx, store, "c", 0); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("recovery of a non-member: %v", err)
	}
}

// A member that leaves (a switchover promoted it) takes its membership and
// its published time out of the group: the others' master time no longer
// waits for it, it publishes nothing more, and added again it is a new
// member without a time.
func TestLeaveEndsTheMembersHoldOnTheMasterTime(t *testing.T) {
	ctx := context.Background()
	store, clk, a, b := twoMembers(t)
	a.own.Store(100)
	b.own.Store(150)
	a.c.Round(ctx)
	b.c.Round(ctx)
	a.c.Round(ctx)
	if a.limit() != 100 || b.limit() != 100 {
		t.Fatalf("limits %d and %d, want a's 100", a.limit(), b.limit())
	}
	store.SetDown(true)
	if err := a.c.Leave(ctx); err == nil || !strings.Contains(err.Error(), "etcd unreachable") {
		t.Fatalf("leave with etcd down: %v", err)
	}
	store.SetDown(false)
	if err := a.c.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	publishes := store.Publishes
	a.own.Store(200)
	clk.advance(time.Minute)
	a.c.Round(ctx)
	if store.Publishes != publishes {
		t.Error("a published after it left")
	}
	if st := a.c.Status(); !strings.Contains(st.Held, "left group") || a.limit() != 100 {
		t.Errorf("a after it left: status %+v, limit %d; want held saying it left, limit 100 kept", st, a.limit())
	}
	v, _ := store.Read(ctx)
	if _, ok := v.Reports["a"]; ok || v.Alive["a"] || len(v.Members) != 1 {
		t.Fatalf("the group after a left: %+v", v)
	}
	b.own.Store(300)
	b.c.Round(ctx)
	if got := b.limit(); got != 300 {
		t.Fatalf("b's limit %d after a left, want its own 300", got)
	}
	store.AddMember(ctx, "a")
	b.c.Round(ctx)
	if st := b.c.Status(); b.limit() != 300 || !strings.Contains(st.Held, "member a has published no time") {
		t.Fatalf("a added again: b's status %+v, limit %d; want a without a time, 300 kept", st, b.limit())
	}
}

// A Coupler that owes its group a join (a session coupled again after its
// switchover) adds its member once it has a time, records that, and
// publishes; a member removed afterwards (duplex couple remove) stays out.
func TestJoinAddsTheMemberOnce(t *testing.T) {
	ctx := context.Background()
	store := NewMemStore()
	store.AddMember(ctx, "b")
	var joined atomic.Int32
	var own atomic.Int64
	c, err := New(Config{Store: store, Group: "g", Member: "a", Own: own.Load, Join: true,
		Joined: func() error { joined.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	// Without a time it does not join: the others would wait for one.
	c.Round(ctx)
	if got := store.MembersNow(); len(got) != 1 {
		t.Fatalf("members %v before a journaled anything, want b alone", got)
	}
	if st := c.Status(); !strings.Contains(st.Held, "joins group") {
		t.Errorf("held %q before the join, want it said that the session joins", st.Held)
	}
	own.Store(100)
	store.SetDown(true)
	c.Round(ctx)
	store.SetDown(false)
	if joined.Load() != 0 {
		t.Fatal("the join was recorded while etcd was down")
	}
	c.Round(ctx)
	if got := store.MembersNow(); len(got) != 2 || got[0] != "a" || joined.Load() != 1 {
		t.Fatalf("members %v, joined %d times; want a and b, once", got, joined.Load())
	}
	if v, _ := store.Read(ctx); v.Reports["a"].Time != 100 {
		t.Errorf("a's time after its join: %d, want 100", v.Reports["a"].Time)
	}
	store.RemoveMember(ctx, "a")
	c.Round(ctx)
	if got := store.MembersNow(); len(got) != 1 || joined.Load() != 1 {
		t.Errorf("members %v, joined %d times after a was removed; want b alone, one join", got, joined.Load())
	}
}

// A member that joins again (Config.Join) behind the master time the
// others reached publishes no time below it: the others applied through
// it, and a recovery time fixed at the minimum of the published times
// would name a time they are past. The member joined at the rejoin's
// consistency time, its seeded one, and the group's recovery time fell
// below what the other member had applied.
func TestJoinPublishesNoTimeBehindTheOthersMasterTime(t *testing.T) {
	ctx := context.Background()
	store, clk := NewMemStore(), &clock{}
	clk.t.Store(1e18)
	store.Now = clk.now
	store.AddMember(ctx, "b")
	b := newMember(t, store, clk, "b", filepath.Join(t.TempDir(), "b.mark"))
	b.own.Store(300)
	b.c.Round(ctx)
	if b.limit() != 300 {
		t.Fatalf("b's limit %d alone in the group, want 300", b.limit())
	}
	var own atomic.Int64
	own.Store(100)
	a, err := New(Config{Store: store, Group: "g", Member: "a", Own: own.Load, Now: clk.now, Join: true})
	if err != nil {
		t.Fatal(err)
	}
	a.Round(ctx)
	if got := store.MembersNow(); len(got) != 2 {
		t.Fatalf("members %v, want a joined", got)
	}
	rt, _ := b.recovery(ctx, t, store, "b")
	if rt < b.limit() {
		t.Errorf("the group's recovery time %d after a joined is before b's limit %d: b applied past it", rt, b.limit())
	}
	// Its own time past that, a publishes it.
	own.Store(400)
	a.Round(ctx)
	if v, _ := store.Read(ctx); v.Reports["a"].Time != 400 {
		t.Errorf("a's time %d once it journaled through 400", v.Reports["a"].Time)
	}
	// A join that a crash cut short after it added the member, before
	// it published: the restart publishes no less either, and only then
	// says the join is done.
	b.c.Round(ctx)
	store.AddMember(ctx, "c")
	var joined atomic.Int32
	var cOwn atomic.Int64
	cOwn.Store(100)
	c, err := New(Config{Store: store, Group: "g", Member: "c", Own: cOwn.Load, Now: clk.now, Join: true,
		Joined: func() error { joined.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	store.SetDown(true)
	c.Round(ctx)
	store.SetDown(false)
	if joined.Load() != 0 {
		t.Fatal("the join was recorded done while etcd was down")
	}
	c.Round(ctx)
	if v, _ := store.Read(ctx); v.Reports["c"].Time < b.limit() || joined.Load() != 1 {
		t.Errorf("c's time %d after its join was finished, b's limit %d, joined %d times; want no less, once", v.Reports["c"].Time, b.limit(), joined.Load())
	}
}

// A member added by duplex couple add (Add) to a group whose members all
// have times publishes none below the master time they reached: they may
// have applied through it, and a recovery time fixed at the minimum of
// the published times would name a time they are past. The new member's
// first time was its own secondary's, and the group's recovery time fell
// below what the other member had applied. Added while the others have
// no time yet (the group forming), nothing was applied: it publishes its
// own time.
func TestAddedMemberPublishesNoTimeBehindTheOthersMasterTime(t *testing.T) {
	ctx := context.Background()
	store, clk := NewMemStore(), &clock{}
	clk.t.Store(1e18)
	store.Now = clk.now
	if err := Add(ctx, store, "b", clk.now()); err != nil {
		t.Fatal(err)
	}
	b := newMember(t, store, clk, "b", filepath.Join(t.TempDir(), "b.mark"))
	b.own.Store(300)
	b.c.Round(ctx)
	if b.limit() != 300 {
		t.Fatalf("b's limit %d alone in the group, want 300", b.limit())
	}
	if err := Add(ctx, store, "a", clk.now()); err != nil {
		t.Fatal(err)
	}
	a := newMember(t, store, clk, "a", "")
	a.own.Store(100)
	a.c.Round(ctx)
	b.c.Round(ctx)
	rt, _ := b.recovery(ctx, t, store, "b")
	if rt < b.limit() {
		t.Errorf("the group's recovery time %d after a was added is before b's limit %d: b applied past it", rt, b.limit())
	}
	a.own.Store(400)
	a.c.Round(ctx)
	if v, _ := store.Read(ctx); v.Reports["a"].Time != 400 {
		t.Errorf("a's time %d once it journaled through 400", v.Reports["a"].Time)
	}

	// A group forming: no member applied anything before the last one
	// published, so each publishes its own time.
	store2 := NewMemStore()
	store2.Now = clk.now
	for _, m := range []string{"x", "y"} {
		if err := Add(ctx, store2, m, clk.now()); err != nil {
			t.Fatal(err)
		}
	}
	x, y := newMember(t, store2, clk, "x", ""), newMember(t, store2, clk, "y", "")
	x.own.Store(300)
	x.c.Round(ctx)
	y.own.Store(100)
	y.c.Round(ctx)
	x.c.Round(ctx)
	if v, _ := store2.Read(ctx); v.Reports["y"].Time != 100 || x.limit() != 100 {
		t.Errorf("y published %d, x's limit %d, in a forming group; want y's own time 100 as both", v.Reports["y"].Time, x.limit())
	}
}
