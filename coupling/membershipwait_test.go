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

// roundUnderWay is a group of member a, whose Coupler went through a
// round, and is in another, waiting for its read of s until s.release is
// closed (or for 4 of its hour-long publish intervals); done is closed
// once it ended.
func roundUnderWay(t *testing.T) (a *member, mem *MemStore, s *stalled, done chan struct{}) {
	t.Helper()
	ctx := context.Background()
	mem, clk := NewMemStore(), &clock{}
	if err := Add(ctx, mem, "a", clk.now()); err != nil {
		t.Fatal(err)
	}
	s = &stalled{Store: mem, reading: make(chan struct{}, 1), release: make(chan struct{})}
	a = &member{}
	c, err := New(Config{Store: s, Group: "g", Member: "a", Own: a.own.Load, Now: clk.now, Publish: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a.c = c
	a.own.Store(10)
	close(s.release)
	a.c.Round(ctx)
	<-s.reading
	s.release = make(chan struct{})
	done = make(chan struct{})
	go func() { a.c.Round(ctx); close(done) }()
	<-s.reading
	return a, mem, s, done
}

// Membership, which a switchover asks for while its primary holds the
// writes, answers from what the last round saw: it waited for a round
// under way, as long as that round's read of an etcd that does not answer
// (at least 2 s).
func TestMembershipWaitsForNoRound(t *testing.T) {
	a, mem, s, done := roundUnderWay(t)
	v, _ := mem.Read(context.Background())
	got := make(chan string)
	go func() { got <- a.c.Membership() }()
	select {
	case ms := <-got:
		if ms != v.Memberships["a"] {
			t.Errorf("membership %q during a round, want %q", ms, v.Memberships["a"])
		}
	case <-done:
		t.Error("Membership answered only once the round under way ended")
	case <-time.After(time.Minute):
		t.Error("Membership did not answer while a round waited for the store")
	}
	close(s.release)
	<-done
}

// Leave, which a switchover makes once its secondary is promoted, its
// primary waiting for the promotion's result, ends a round under way
// rather than waiting for it: it waited as long as that round's read of
// an etcd that does not answer (at least 2 s; here, 4 of the hour-long
// publish intervals). The round publishes nothing after the leave.
func TestLeaveWaitsForNoRound(t *testing.T) {
	ctx := context.Background()
	a, mem, s, done := roundUnderWay(t)
	left := make(chan error)
	go func() { left <- a.c.Leave(ctx) }()
	select {
	case err := <-left:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Leave did not return while a round waited for the store")
	}
	<-done
	if v, _ := mem.Read(ctx); len(v.Members) != 0 || len(v.Reports) != 0 {
		t.Errorf("the group after a left during a round: %+v", v)
	}
	close(s.release)
}
