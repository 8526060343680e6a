package coupling

import (
	"context"
	"strings"
	"testing"
)

// A member whose secondary has journaled nothing yet publishes time 0 (it
// publishes to renew its lease). That is no time at all: it holds the
// master time as a member that never published does. Taken for "no
// minimum yet", it was skipped where it came first in the members' order,
// and the others' limits rose past every update it may still receive;
// where it came last, it held them: the same group, a different master
// time by the members' names.
func TestAMemberAtTimeZeroHoldsTheMasterTime(t *testing.T) {
	ctx := context.Background()
	for _, names := range [][2]string{{"a", "b"}, {"b", "a"}} {
		store, clk := NewMemStore(), &clock{}
		clk.t.Store(1e18)
		store.Now = clk.now
		empty, ahead := names[0], names[1]
		store.AddMember(ctx, empty)
		store.AddMember(ctx, ahead)
		e, m := newMember(t, store, clk, empty, ""), newMember(t, store, clk, ahead, "")
		m.own.Store(80)
		e.c.Round(ctx)
		m.c.Round(ctx)
		if got := m.limit(); got != 0 {
			t.Errorf("%s at time 0, %s at 80: %s's limit %d, want 0", empty, ahead, ahead, got)
		}
		if st := m.c.Status(); st.Master != 0 || st.Laggard != empty || !strings.Contains(st.Held, "member "+empty+" has published no time") {
			t.Errorf("%s at time 0: status %+v, want %s named as the laggard with no time", empty, st, empty)
		}
		if _, _, err := RecoveryTime(ctx, store, ahead, 0); err == nil || !strings.Contains(err.Error(), "member "+empty+" never published a time") {
			t.Errorf("%s at time 0: the group's recovery time: %v, want refused: no time is known that %s holds", empty, err, empty)
		}
		e.own.Store(50)
		e.c.Round(ctx)
		m.c.Round(ctx)
		if got := m.limit(); got != 50 {
			t.Errorf("%s at 50, %s at 80: %s's limit %d, want 50", empty, ahead, ahead, got)
		}
	}
}

// A recovery time before what the asking member applied through is of an
// earlier incident: fixed again from the times published now, and the
// same for every member that asks after.
func TestAnEarlierIncidentsRecoveryTimeIsFixedAgain(t *testing.T) {
	ctx := context.Background()
	store := NewMemStore()
	for _, m := range []string{"a", "b"} {
		store.AddMember(ctx, m)
	}
	store.Publish(ctx, "a", Report{Time: 40})
	store.Publish(ctx, "b", Report{Time: 50})
	if got, _, err := RecoveryTime(ctx, store, "a", 30); err != nil || got != 40 {
		t.Fatalf("the first incident: %d, %v; want 40", got, err)
	}
	// The group ran on; the second incident.
	store.Publish(ctx, "a", Report{Time: 140})
	store.Publish(ctx, "b", Report{Time: 120})
	if got, _, err := RecoveryTime(ctx, store, "a", 40); err != nil || got != 40 {
		t.Fatalf("a member that applied through the recovery time: %d, %v; want it kept", got, err)
	}
	if got, _, err := RecoveryTime(ctx, store, "b", 110); err != nil || got != 120 {
		t.Fatalf("a member that applied past the recovery time: %d, %v; want it fixed again at 120", got, err)
	}
	if got, _, err := RecoveryTime(ctx, store, "a", 100); err != nil || got != 120 {
		t.Fatalf("the next member: %d, %v; want 120, as fixed again", got, err)
	}
}
