package coupling

import (
	"context"
	"testing"
	"time"
)

// readThen is a store whose next Read runs then once it has read: what
// another process does between a round's read and its publication.
type readThen struct {
	Store
	then func()
}

func (s *readThen) Read(ctx context.Context) (View, error) {
	v, err := s.Store.Read(ctx)
	if f := s.then; f != nil {
		s.then = nil
		f()
	}
	return v, err
}

// A member's secondary started before duplex couple add publishes its own
// time every round. The add, landing between a round's read and its
// publication, gives the member the group's floor; the round's
// publication must not put the member's own, earlier, time back over it.
// It did: the member's published time fell behind the master time the
// other member had applied through, and a group recovery named a time
// before it.
func TestAPublicationDoesNotLowerTheFloorAnAddGave(t *testing.T) {
	onEachStore(t, func(t *testing.T, store, cli Store) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		clk := &clock{}
		clk.t.Store(1e18)
		b := applyingAlone(ctx, t, cli, clk, "b", 300)
		hooked := &readThen{Store: store}
		x := newMember(t, hooked, clk, "x", "")
		x.own.Store(50)
		x.c.Round(ctx)
		x.own.Store(60)
		hooked.then = func() {
			if err := Add(ctx, cli, "x", clk.now()); err != nil {
				t.Error(err)
			}
		}
		x.c.Round(ctx)
		b.c.Round(ctx)
		rt, v, err := RecoveryTime(ctx, cli, "b", b.limit())
		if err != nil {
			t.Fatal(err)
		}
		if got := v.Reports["x"].Time; got < 300 || rt < b.limit() {
			t.Errorf("x's time %d, the group's recovery time %d, after x's round published over its add: want no less than b's limit %d",
				got, rt, b.limit())
		}
	})
}
