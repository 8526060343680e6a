package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// memPair dials and accepts one connection on n.
func memPair(t *testing.T, n *MemNetwork) (primary, secondary Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		c   Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := n.Accept(ctx)
		ch <- res{c, err}
	}()
	p, err := n.Dial(ctx)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("Accept: %v", r.err)
	}
	t.Cleanup(func() { p.Close(); r.c.Close() })
	return p, r.c
}

// recvTimeout receives one frame or fails the test after a generous deadline.
func recvTimeout(t *testing.T, c Conn) []byte {
	t.Helper()
	type res struct {
		f   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		f, err := c.Recv()
		ch <- res{f, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Recv: %v", r.err)
		}
		return r.f
	case <-time.After(10 * time.Second):
		t.Fatal("Recv: nothing arrived within 10s")
		return nil
	}
}

// recvErr waits for Recv to fail and returns the error.
func recvErr(t *testing.T, c Conn) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() {
		for {
			if _, err := c.Recv(); err != nil {
				ch <- err
				return
			}
		}
	}()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Recv did not fail within 10s")
		return nil
	}
}

// msg is a small control-type frame: its CRC covers the whole frame, so Open
// alone detects any corruption of it.
func msg(i int) []byte { return Frame(TypeAck, fmt.Appendf(nil, "frame %d", i)) }

func TestMemDeliversInOrderWithoutFaults(t *testing.T) {
	n := NewMemNetwork(1, Faults{})
	p, s := memPair(t, n)
	for i := range 100 {
		if err := p.Send(msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if got, want := recvTimeout(t, s), msg(i); !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %q, want %q", i, got, want)
		}
	}
	// And the other way.
	if err := s.Send(msg(7)); err != nil {
		t.Fatal(err)
	}
	if got, want := recvTimeout(t, p), msg(7); !bytes.Equal(got, want) {
		t.Fatalf("reply: got %q, want %q", got, want)
	}
	if got := n.Stats(); got.Frames != 101 || got.Dropped+got.Duplicated+got.Reordered+got.Corrupted+got.Disconnects != 0 {
		t.Fatalf("Stats = %+v, want 101 frames and no faults", got)
	}
}

// The frame handed to Send may be reused by the caller as soon as Send
// returns.
func TestMemSendCopiesFrame(t *testing.T) {
	n := NewMemNetwork(1, Faults{})
	p, s := memPair(t, n)
	f := msg(1)
	want := bytes.Clone(f)
	if err := p.Send(f); err != nil {
		t.Fatal(err)
	}
	for i := range f {
		f[i] = 0
	}
	if got := recvTimeout(t, s); !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestMemFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults Faults
		// check sends frames with the fault set and then, with faults cleared,
		// checks what arrived.
		check func(t *testing.T, n *MemNetwork, p, s Conn)
	}{
		{"drop", Faults{Drop: 1}, func(t *testing.T, n *MemNetwork, p, s Conn) {
			for i := range 10 {
				if err := p.Send(msg(i)); err != nil {
					t.Fatalf("Send of a dropped frame: %v (the sender cannot tell)", err)
				}
			}
			n.SetFaults(Faults{})
			marker := msg(99)
			if err := p.Send(marker); err != nil {
				t.Fatal(err)
			}
			if got := recvTimeout(t, s); !bytes.Equal(got, marker) {
				t.Fatalf("first frame to arrive is %q, want the marker %q: a dropped frame arrived", got, marker)
			}
			if got := n.Stats(); got.Dropped != 10 || got.Frames != 11 {
				t.Fatalf("Stats = %+v, want 10 dropped of 11", got)
			}
		}},
		{"duplicate", Faults{Duplicate: 1}, func(t *testing.T, n *MemNetwork, p, s Conn) {
			for i := range 3 {
				if err := p.Send(msg(i)); err != nil {
					t.Fatal(err)
				}
			}
			n.SetFaults(Faults{})
			p.Send(msg(99))
			for _, want := range [][]byte{msg(0), msg(0), msg(1), msg(1), msg(2), msg(2), msg(99)} {
				if got := recvTimeout(t, s); !bytes.Equal(got, want) {
					t.Fatalf("got %q, want %q", got, want)
				}
			}
			if got := n.Stats(); got.Duplicated != 3 {
				t.Fatalf("Stats.Duplicated = %d, want 3", got.Duplicated)
			}
		}},
		{"reorder", Faults{Reorder: 1}, func(t *testing.T, n *MemNetwork, p, s Conn) {
			// Nothing is received until both are queued, so the second one
			// has a frame to overtake.
			p.Send(msg(1))
			p.Send(msg(2))
			n.SetFaults(Faults{})
			p.Send(msg(3))
			for _, want := range [][]byte{msg(2), msg(1), msg(3)} {
				if got := recvTimeout(t, s); !bytes.Equal(got, want) {
					t.Fatalf("got %q, want %q", got, want)
				}
			}
			if got := n.Stats(); got.Reordered == 0 {
				t.Fatalf("Stats.Reordered = 0 after a reordering")
			}
		}},
		{"corrupt", Faults{Corrupt: 1}, func(t *testing.T, n *MemNetwork, p, s Conn) {
			for i := range 20 {
				if err := p.Send(msg(i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 20 {
				got := recvTimeout(t, s)
				if _, _, err := Open(got); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("frame %d: Open of a corrupted frame: %v, want ErrCorrupt", i, err)
				}
				if d := bitsDiffer(got, msg(i)); d != 1 {
					t.Fatalf("frame %d: %d bits differ, want exactly 1", i, d)
				}
			}
			if got := n.Stats(); got.Corrupted != 20 {
				t.Fatalf("Stats.Corrupted = %d, want 20", got.Corrupted)
			}
		}},
		{"disconnect", Faults{Disconnect: 1}, func(t *testing.T, n *MemNetwork, p, s Conn) {
			if err := p.Send(msg(1)); !errors.Is(err, ErrClosed) {
				t.Fatalf("Send with an injected disconnect: %v, want ErrClosed", err)
			}
			if err := recvErr(t, s); !errors.Is(err, ErrClosed) {
				t.Fatalf("peer Recv: %v, want ErrClosed", err)
			}
			if err := recvErr(t, p); !errors.Is(err, ErrClosed) {
				t.Fatalf("own Recv: %v, want ErrClosed", err)
			}
			n.SetFaults(Faults{})
			if err := p.Send(msg(2)); !errors.Is(err, ErrClosed) {
				t.Fatalf("Send after the disconnect: %v, want ErrClosed", err)
			}
			if err := s.Send(msg(2)); !errors.Is(err, ErrClosed) {
				t.Fatalf("peer Send after the disconnect: %v, want ErrClosed", err)
			}
			if got := n.Stats(); got.Disconnects != 1 {
				t.Fatalf("Stats.Disconnects = %d, want 1", got.Disconnects)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := NewMemNetwork(42, Faults{})
			p, s := memPair(t, n)
			n.SetFaults(tc.faults)
			tc.check(t, n, p, s)
		})
	}
}

// Faults apply in both directions.
func TestMemFaultsApplyBothWays(t *testing.T) {
	n := NewMemNetwork(3, Faults{})
	p, s := memPair(t, n)
	n.SetFaults(Faults{Corrupt: 1})
	s.Send(msg(1))
	if _, _, err := Open(recvTimeout(t, p)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("secondary→primary frame not corrupted: %v", err)
	}
}

func bitsDiffer(a, b []byte) int {
	if len(a) != len(b) {
		return -1
	}
	n := 0
	for i := range a {
		for x := a[i] ^ b[i]; x != 0; x &= x - 1 {
			n++
		}
	}
	return n
}

// At a moderate probability each fault is injected about as often as asked,
// and the same seed injects the same faults.
func TestMemFaultRatesAndSeed(t *testing.T) {
	run := func(seed uint64) MemStats {
		n := NewMemNetwork(seed, Faults{Drop: 0.2, Duplicate: 0.2, Reorder: 0.2, Corrupt: 0.2})
		p, _ := memPair(t, n)
		for i := range 2000 {
			if err := p.Send(msg(i)); err != nil {
				t.Fatal(err)
			}
		}
		return n.Stats()
	}
	a, b := run(7), run(7)
	if a != b {
		t.Fatalf("same seed, different faults: %+v vs %+v", a, b)
	}
	for name, got := range map[string]uint64{"dropped": a.Dropped, "duplicated": a.Duplicated, "reordered": a.Reordered, "corrupted": a.Corrupted} {
		if got < 300 || got > 500 {
			t.Errorf("%s %d of 2000 at probability 0.2", name, got)
		}
	}
}

func TestMemMaxDelay(t *testing.T) {
	const maxDelay = 100 * time.Millisecond
	n := NewMemNetwork(5, Faults{MaxDelay: maxDelay})
	p, s := memPair(t, n)
	const frames = 20
	start := time.Now()
	for i := range frames {
		if err := p.Send(msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Delayed frames still arrive, in order.
	for i := range frames {
		if got, want := recvTimeout(t, s), msg(i); !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	// Each frame waits a random time below maxDelay; that the last of twenty
	// waited under a tenth of it has probability 1e-20, and the seed is fixed.
	if elapsed := time.Since(start); elapsed < maxDelay/10 {
		t.Fatalf("%d frames with up to %v of delay all arrived within %v", frames, maxDelay, elapsed)
	}
	// Without the delay, a frame is there at once: a Recv that blocks on an
	// empty queue is woken by the send.
	n.SetFaults(Faults{})
	done := make(chan []byte, 1)
	go func() {
		f, _ := s.Recv()
		done <- f
	}()
	p.Send(msg(100))
	select {
	case f := <-done:
		if !bytes.Equal(f, msg(100)) {
			t.Fatalf("got %q", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocked Recv not woken by Send")
	}
}

// A frame that is still delayed is not delivered early.
func TestMemDelayedFrameNotDeliveredEarly(t *testing.T) {
	n := NewMemNetwork(11, Faults{MaxDelay: time.Hour})
	p, s := memPair(t, n)
	p.Send(msg(1))
	got := make(chan []byte, 1)
	go func() {
		f, err := s.Recv()
		if err == nil {
			got <- f
		}
	}()
	select {
	case f := <-got:
		t.Fatalf("frame delayed by up to an hour arrived at once: %q", f)
	case <-time.After(50 * time.Millisecond):
	}
	s.Close() // ends the Recv
}

func TestMemCutClosesConnections(t *testing.T) {
	n := NewMemNetwork(1, Faults{})
	p1, s1 := memPair(t, n)
	p2, s2 := memPair(t, n)
	before := n.Stats().Disconnects
	n.Cut()
	for name, c := range map[string]Conn{"primary 1": p1, "secondary 1": s1, "primary 2": p2, "secondary 2": s2} {
		if err := recvErr(t, c); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: Recv after Cut: %v, want ErrClosed", name, err)
		}
		if err := c.Send(msg(1)); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: Send after Cut: %v, want ErrClosed", name, err)
		}
	}
	if got := n.Stats().Disconnects; got <= before {
		t.Errorf("Stats.Disconnects = %d after Cut, was %d", got, before)
	}
	// The network itself still works.
	p3, s3 := memPair(t, n)
	p3.Send(msg(3))
	if got := recvTimeout(t, s3); !bytes.Equal(got, msg(3)) {
		t.Fatalf("after Cut: got %q", got)
	}
}

func TestMemCloseBlocksRecvAndSend(t *testing.T) {
	n := NewMemNetwork(1, Faults{})
	p, s := memPair(t, n)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Recv()
		errc <- err
	}()
	p.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Recv after peer Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocked Recv not ended by the peer's Close")
	}
	if err := s.Send(msg(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send to a closed peer: %v", err)
	}
}

func TestMemListenerClose(t *testing.T) {
	n := NewMemNetwork(1, Faults{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := n.Accept(ctx)
		errc <- err
	}()
	n.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Accept after Close: %v, want ErrClosed", err)
	}
	if _, err := n.Dial(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Dial after Close: %v, want ErrClosed", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestMemDialAndAcceptHonourContext(t *testing.T) {
	n := NewMemNetwork(1, Faults{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Dial(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial with nobody accepting and a cancelled context: %v", err)
	}
	if _, err := n.Accept(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Accept with nobody dialling and a cancelled context: %v", err)
	}
}

// Conn.Send takes any frame; the corrupt fault must not turn an empty one
// into a panic.
func TestMemCorruptEmptyFrame(t *testing.T) {
	n := NewMemNetwork(1, Faults{})
	p, s := memPair(t, n)
	n.SetFaults(Faults{Corrupt: 1})
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Send of an empty frame with Corrupt set panicked: %v", r)
			}
		}()
		if err := p.Send(nil); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}()
	if got := recvTimeout(t, s); len(got) != 0 {
		t.Fatalf("got %x, want an empty frame", got)
	}
}

// TestMemCloseDeliversWhatWasSent: as with a TCP socket, frames sent before
// Close reach the peer (a refusal's reason is sent just before closing), and
// then the peer sees the end.
func TestMemCloseDeliversWhatWasSent(t *testing.T) {
	n := NewMemNetwork(1, Faults{})
	p, s := memPair(t, n)
	if err := s.Send(msg(1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := recvTimeout(t, p); !bytes.Equal(got, msg(1)) {
		t.Fatalf("after the sender closed: got %q, want %q", got, msg(1))
	}
	if err := recvErr(t, p); !errors.Is(err, ErrClosed) {
		t.Fatalf("Recv after the last frame of a closed peer: %v, want ErrClosed", err)
	}
	if err := s.Send(msg(2)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v, want ErrClosed", err)
	}
}
