package coupling

import (
	"context"
	"testing"
	"time"
)

// addThen is a store whose AddMember runs then once the member is made:
// what the others do while duplex couple add goes on.
type addThen struct {
	Store
	then func()
}

func (s *addThen) AddMemberView(ctx context.Context, member string) (View, error) {
	v, err := s.Store.AddMemberView(ctx, member)
	if f := s.then; f != nil {
		s.then = nil
		f()
	}
	return v, err
}

// The floor a member added by duplex couple add starts at claims its
// writes stamped through it, made before its add, which were coupled with
// no other's. It must be no later than the others' times when the member
// was made: a write of the member issued after that is coupled, and a
// later write of another member that depended on it must not be
// recovered without it. The floor was read after the add, and a time the
// other member published meanwhile, past such a write, made the group's
// recovery time pass it while the member's secondary had not journaled
// it.
func TestAnAddsFloorClaimsNoWriteMadeAfterTheAdd(t *testing.T) {
	onEachStore(t, func(t *testing.T, store, cli Store) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		clk := &clock{}
		clk.t.Store(1e18)
		b := applyingAlone(ctx, t, store, clk, "b", 100)
		x := newMember(t, store, clk, "x", "")
		x.own.Store(50)
		// Once x is a member: a client writes A to x (stamped 150), then
		// B to b (180), which depends on it; b's secondary journals B and
		// publishes 200 before the add reads the group. x's secondary
		// has journaled through 50.
		hooked := &addThen{Store: cli, then: func() {
			b.own.Store(200)
			b.c.Round(ctx)
		}}
		if err := Add(ctx, hooked, "x", clk.now()); err != nil {
			t.Fatal(err)
		}
		x.c.Round(ctx)
		b.c.Round(ctx)
		rt, v := b.recovery(ctx, t, store, "b")
		if rt >= 150 || b.limit() >= 180 {
			t.Errorf("x added with b at 100 and journaled through 50: x's time %d, b's limit %d, the group's recovery time %d; "+
				"want them before A (150), which x's secondary does not hold, and B (180), which depends on it",
				v.Reports["x"].Time, b.limit(), rt)
		}
	})
}
