package coupling

import (
	"context"
	"sync"
	"testing"
)

// addBarrier is a store on which each AddMember waits until every add of
// the test made its member: adds run in parallel, each reading the group
// with the other's member in it and without its time yet.
type addBarrier struct {
	*MemStore
	added sync.WaitGroup
}

func (s *addBarrier) AddMemberView(ctx context.Context, member string) (View, error) {
	v, err := s.MemStore.AddMemberView(ctx, member)
	s.added.Done()
	s.added.Wait()
	return v, err
}

// Two duplex couple add run in parallel, to a group whose member applied
// through its master time, each start no lower than that time: they may
// not wait for each other's time. Each took the other, added and without
// a time, for a group forming, and published no floor; their own times,
// earlier, made a group recovery name a time before what the member had
// applied.
func TestParallelAddsEachStartAtTheOthersMasterTime(t *testing.T) {
	ctx := context.Background()
	mem, clk := NewMemStore(), &clock{}
	clk.t.Store(1e18)
	mem.Now = clk.now
	b := applyingAlone(ctx, t, mem, clk, "b", 300)
	store := &addBarrier{MemStore: mem}
	store.added.Add(2)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, m := range []string{"x", "y"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Add(ctx, store, m, clk.now())
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	x, y := newMember(t, mem, clk, "x", ""), newMember(t, mem, clk, "y", "")
	x.own.Store(100)
	y.own.Store(200)
	x.c.Round(ctx)
	y.c.Round(ctx)
	rt, v, err := RecoveryTime(ctx, mem, "b", b.limit())
	if err != nil {
		t.Fatal(err)
	}
	if rt < b.limit() {
		t.Errorf("the group's recovery time %d after x and y were added together is before b's limit %d (x %d, y %d): b applied past it",
			rt, b.limit(), v.Reports["x"].Time, v.Reports["y"].Time)
	}
}
