package coupling

import (
	"context"
	"testing"
	"time"
)

// stalled is a store whose reads wait until release is closed or their
// ctx ends: an etcd that does not answer.
type stalled struct {
	Store
	reading chan struct{}
	release chan struct{}
}

func (s *stalled) Read(ctx context.Context) (View, error) {
	s.reading <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return s.Store.Read(ctx)
}

// Membership, which a switchover asks for while its primary holds the
// writes, answers from what the last round saw: it waited for a round
// under way, as long as that round's read of an etcd that does not answer
// (2 s).
func TestMembershipWaitsForNoRound(t *testing.T) {
	ctx := context.Background()
	mem, clk := NewMemStore(), &clock{}
	if err := Add(ctx, mem, "a", clk.now()); err != nil {
		t.Fatal(err)
	}
	s := &stalled{Store: mem, reading: make(chan struct{}, 1), release: make(chan struct{})}
	close(s.release)
	a := newMember(t, s, clk, "a", "")
	a.own.Store(10)
	a.c.Round(ctx)
	<-s.reading
	want := a.c.Membership()
	if want == "" {
		t.Fatal("no membership seen by a round")
	}
	s.release = make(chan struct{})
	done := make(chan struct{})
	go func() { a.c.Round(ctx); close(done) }()
	<-s.reading
	got := make(chan string)
	go func() { got <- a.c.Membership() }()
	select {
	case ms := <-got:
		if ms != want {
			t.Errorf("membership %q during a round, want %q", ms, want)
		}
	case <-done:
		t.Error("Membership answered only once the round under way ended")
	case <-time.After(time.Minute):
		t.Error("Membership did not answer while a round waited for the store")
	}
	close(s.release)
	<-done
}
