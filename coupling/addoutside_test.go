package coupling

import (
	"context"
	"sync"
	"testing"
	"time"
)

// bothAdded is a store on which each AddMember waits until every add of the
// test made its member, as addBarrier, over any store.
type bothAdded struct {
	Store
	added sync.WaitGroup
}

func (s *bothAdded) AddMemberView(ctx context.Context, member string) (View, error) {
	v, err := s.Store.AddMemberView(ctx, member)
	s.added.Done()
	s.added.Wait()
	return v, err
}

// A time in the group that was published while its session was not a
// member (its secondary started before its duplex couple add, or one left
// over from before a duplex couple remove) bounds no limit: the others
// applied past it. Two adds in parallel, one of such a session, each read
// the other as a member; the other's add took that time for the floor,
// and a group recovery named a time before what a member had applied.
func TestAParallelAddTakesNoTimePublishedOutsideTheGroupForItsFloor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		outside func(ctx context.Context, t *testing.T, store Store, clk *clock, b *member)
	}{
		{"started before its add", func(ctx context.Context, t *testing.T, store Store, clk *clock, b *member) {
			c := newMember(t, store, clk, "c", "")
			c.own.Store(60)
			c.c.Round(ctx)
		}},
		{"removed and added again", func(ctx context.Context, t *testing.T, store Store, clk *clock, b *member) {
			if err := Add(ctx, store, "c", clk.now()); err != nil {
				t.Fatal(err)
			}
			c := newMember(t, store, clk, "c", "")
			c.own.Store(400)
			c.c.Round(ctx) // c's time is 400, later than b's floor 300
			if err := store.RemoveMember(ctx, "c"); err != nil {
				t.Fatal(err)
			}
			// c stops; b goes on alone, past c's last time, once its view
			// has lost c: etcd's watch may bring the removal after b's
			// next round, whose view then holds c's time (Follower).
			b.own.Store(500)
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				b.c.Round(ctx)
				if b.limit() == 500 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("b's limit %d alone again, want 500", b.limit())
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onEachStore(t, func(t *testing.T, store, cli Store) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				clk := &clock{}
				clk.t.Store(1e18)
				b := applyingAlone(ctx, t, store, clk, "b", 300)
				tc.outside(ctx, t, store, clk, b)
				both := &bothAdded{Store: cli}
				both.added.Add(2)
				var wg sync.WaitGroup
				errs := make([]error, 2)
				for i, m := range []string{"x", "c"} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs[i] = Add(ctx, both, m, clk.now())
					}()
				}
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				x := newMember(t, store, clk, "x", "")
				x.own.Store(100)
				x.c.Round(ctx)
				rt, v := b.recovery(ctx, t, store, "b")
				if rt < b.limit() {
					t.Errorf("the group's recovery time %d after x and c were added together is before b's limit %d (x %d, c %d): b applied past it",
						rt, b.limit(), v.Reports["x"].Time, v.Reports["c"].Time)
				}
			})
		})
	}
}
