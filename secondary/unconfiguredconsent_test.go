package secondary

import (
	"sync"
	"testing"
	"time"

	"duplex/transport"
)

// TestAConsentToOverwriteDuringTheWaitingGroupsApplyChangesNothing: while
// a primary's link applies the groups that waited for it, outside the
// secondary's main lock, a primary of another data generation comes with
// the operator's consent to overwrite this secondary's copies. It is
// refused, and must change nothing: before, its consent was acted on
// first (the copies forgotten, the identity made to follow its
// generation), and the primary whose link applied the groups was then
// refused as one of a generation the secondary no longer follows.
func TestAConsentToOverwriteDuringTheWaitingGroupsApplyChangesNothing(t *testing.T) {
	r := withoutVol2(t, killedWithGroupsUnapplied(t))
	gate, at := make(chan struct{}), make(chan struct{})
	var once, opened sync.Once
	open := func() { opened.Do(func() { close(gate) }) }
	t.Cleanup(open)
	r.sec.targets["vol1"] = offsetGatedTarget{Target: r.sec.targets["vol1"], off: 12288, gate: gate, at: at, once: &once}
	follows, _ := r.sec.Generation()
	without := r.hello()
	without.Instance = 9
	linked := make(chan byte, 1)
	go func() {
		_, typ, _ := r.dial(without)
		linked <- typ
	}()
	select {
	case <-at:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting groups' apply never reached group 4's write")
	}
	other := r.hello()
	other.Instance, other.Generation, other.Overwrite = 10, follows+1, &follows
	if _, typ, _ := r.dial(other); typ != transport.TypeRefuse {
		t.Errorf("a consenting primary during the apply: frame type %d, want a refusal", typ)
	}
	if g, _ := r.sec.Generation(); g != follows {
		t.Errorf("a refused primary's consent made the secondary follow generation %s, not %s", g, follows)
	}
	open()
	if typ := <-linked; typ != transport.TypeWelcome {
		t.Errorf("the primary whose link applied the groups: frame type %d, want a welcome", typ)
	}
	if v := r.sec.Volume("vol1"); !v.Consistent {
		t.Errorf("vol1 once applied: %+v, want consistent: a refused primary's consent forgot it", v)
	}
}
