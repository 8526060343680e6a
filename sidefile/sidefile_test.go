package sidefile

import (
	"context"
	"testing"
	"time"

	"duplex/recordset"
)

func TestBoundedWritersWaitUntilRelease(t *testing.T) {
	s := New(3 * Cost(100))
	ctx := context.Background()
	for range 3 {
		if _, err := s.Reserve(ctx, Cost(100)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Reserve(ctx, Cost(100))
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Waiting == 0 {
		if time.Now().After(deadline) {
			t.Fatal("writer never waited on a full sidefile")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("reservation succeeded past the limit")
	default:
	}
	if got := s.Stats().Used; got > s.Stats().Limit {
		t.Fatalf("used %d > limit", got)
	}
	s.Release(Cost(100))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Waits != 1 || st.Used != 3*Cost(100) {
		t.Fatalf("stats %+v", st)
	}
}

func TestReserveHonoursContextAndOversize(t *testing.T) {
	s := New(Cost(10))
	if _, err := s.Reserve(context.Background(), Cost(11)); err == nil {
		t.Fatal("an update larger than the whole sidefile was accepted")
	}
	if _, err := s.Reserve(context.Background(), Cost(10)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Reserve(ctx, 1); err == nil {
		t.Fatal("reserve on a full sidefile returned without space")
	}
	if s.Stats().Waiting != 0 {
		t.Fatal("cancelled waiter still counted")
	}
}

func TestDrainKeepsOrderAndNumbers(t *testing.T) {
	s := New(1 << 20)
	for i := range 5 {
		s.Append(recordset.Update{Volume: "v", Kind: recordset.KindWrite, Timestamp: int64(i + 1)})
	}
	got := s.Drain()
	if len(got) != 5 {
		t.Fatalf("drained %d", len(got))
	}
	for i, u := range got {
		if u.Seq != uint64(i+1) || u.Timestamp != int64(i+1) {
			t.Fatalf("entry %d: %+v", i, u)
		}
	}
	if len(s.Drain()) != 0 {
		t.Fatal("second drain not empty")
	}
	s.Append(recordset.Update{Volume: "v"})
	if got := s.Drain(); got[0].Seq != 6 {
		t.Fatalf("sequence restarted: %d", got[0].Seq)
	}
}

func TestUnpacedIsWherePacingStarts(t *testing.T) {
	s := New(1000)
	if got := s.Unpaced(); got != 500 {
		t.Errorf("default pacing: %d bytes unpaced, want 500", got)
	}
	s.SetPacing(Pacing{Start: 0.8, MaxDelay: time.Millisecond})
	if got := s.Unpaced(); got != 800 {
		t.Errorf("pacing from 80 %%: %d bytes unpaced, want 800", got)
	}
	s.SetPacing(Pacing{})
	if got := s.Unpaced(); got != 1000 {
		t.Errorf("pacing off: %d bytes unpaced, want the limit, 1000", got)
	}
}
