package pair

import (
	"fmt"
	"strings"
	"testing"

	"duplex/consistency"
	"duplex/transport"
)

// TestAStaleRefusalFollowedByAnotherSuspends: the manager looks at the
// mover now and then, and two refusals may come between two looks. A
// stale record set's refusal followed by one of another kind (a passing
// refusal of the next connection) must still suspend the session at the
// next look: read by the last refusal's kind alone, the stale one is
// missed, and the record set is sent again to be refused again.
func TestAStaleRefusalFollowedByAnotherSuspends(t *testing.T) {
	withIdle(t, 0)
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.settle()
	r.write("a", 0, 4096)
	r.mv.refuse(transport.Refusal{Reason: "refusing a record set: " + consistency.ErrStale.Error(), Passing: true, Kind: transport.RefusalStale})
	r.mv.refuse(transport.Refusal{Reason: "an apply is under way", Passing: true})
	r.mg.autoSuspend()
	for _, v := range []string{"a", "b"} {
		p := r.pair(v)
		if p.State != Suspended || !p.Auto || !strings.Contains(p.Reason, "consistency time") {
			t.Fatalf("after a stale refusal and another before the manager looked, %s is %s (auto %v, reason %q), want suspended by the session for the stale record set",
				v, p.State, p.Auto, p.Reason)
		}
	}
	// Handled once: the next look suspends nothing again.
	r.mv.setConnected(true)
	r.mg.autoSuspend()
	if p := r.pair("a"); p.State != Pending {
		t.Fatalf("link back after the handled stale refusal: a is %s, want pending (resync)", p.State)
	}
}

// TestAStaleRefusalIsWordedByItsCause: the secondary refuses, as one kind
// (a stale record set's), a record set stamped at or before its
// consistency time (a primary's clock gone back) and one stamped out of
// order (a broken timer: two updates stamped alike, or a subsystem's
// stamps going back). The session's suspension must say the cause the
// refusal gives: every one read as the clock gone back sent an operator to
// the clock for a timer at fault.
func TestAStaleRefusalIsWordedByItsCause(t *testing.T) {
	withIdle(t, 0)
	for _, tc := range []struct {
		name, refusal string
		want, wantNot string
	}{
		{"stale", "refusing a record set: " + fmt.Errorf("record set ss1/3: update 1 of 1 (volume \"a\") is stamped 5, not after the consistency time 9: %w",
			consistency.ErrStale).Error(), "clock went back", "out of order"},
		{"alike", "refusing a record set: " + fmt.Errorf("record set ss1/3: update 1 of 1 (volume \"a\") is stamped 5, as is an update of subsystem ss2: "+
			"one timer stamps every subsystem's writes, never twice alike: %w", consistency.ErrOutOfOrder).Error(), "out of order", "clock went back"},
		{"words unknown", "refusing a record set: the stamps are odd", "the stamps are odd", "clock went back"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
			r.settle()
			r.write("a", 0, 4096)
			r.mv.refuse(transport.Refusal{Reason: tc.refusal, Passing: true, Kind: transport.RefusalStale})
			r.mg.autoSuspend()
			p := r.pair("a")
			if p.State != Suspended || !p.Auto {
				t.Fatalf("a is %s (auto %v) after a stale refusal, want suspended by the session", p.State, p.Auto)
			}
			if !strings.Contains(p.Reason, tc.want) || strings.Contains(p.Reason, tc.wantNot) {
				t.Fatalf("suspended for %q, refused for %q: want the reason to say %q, not %q", p.Reason, tc.refusal, tc.want, tc.wantNot)
			}
		})
	}
}
