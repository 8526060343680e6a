package pair

import (
	"strings"
	"testing"

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
	r.mv.refuse(transport.Refusal{Reason: "refusing a record set: the primary's clock went back", Passing: true, Kind: transport.RefusalStale})
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
