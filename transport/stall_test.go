package transport

import (
	"errors"
	"io"
	"testing"
	"time"
)

// TestTCPSendToAPeerThatStopsReadingFails: a peer that stops reading keeps
// TCP alive with a zero window; a frame larger than the sockets buffer must
// fail with ErrStalled once the peer has taken nothing for the send timeout,
// and close the connection, with and without TLS, from either side.
func TestTCPSendToAPeerThatStopsReadingFails(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tls      bool
		fromDial bool
	}{{"plain/dialer", false, true}, {"plain/listener", false, false}, {"tls/dialer", true, true}, {"tls/listener", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPairOver(t, tc.tls)
			sender, peer := client, server
			if !tc.fromDial {
				sender, peer = server, client
			}
			const timeout = 300 * time.Millisecond
			sender.SetSendTimeout(timeout)
			done := make(chan error, 1)
			go func() { done <- sender.Send(make([]byte, 48<<20)) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("Send of 48 MiB to a peer that reads nothing has not returned after 30s (send timeout %s)", timeout)
			}
			if !errors.Is(err, ErrStalled) {
				t.Fatalf("Send to a peer that reads nothing: got %v, want ErrStalled", err)
			}
			t.Logf("%v", err)
			// Closed: the peer sees the end of the stream, not a torn frame taken whole.
			if f, err := peer.Recv(); err == nil {
				t.Fatalf("the peer received a frame of %d bytes after the sender gave up", len(f))
			}
			if err := sender.Send([]byte{1}); err == nil {
				t.Fatal("Send after a stall succeeded: the connection must be closed")
			}
		})
	}
}

// TestTCPSendToASlowReaderGoesOn: a peer that reads in bursts with pauses
// (a secondary syncing its journal between record sets), so that a frame
// takes longer than the send timeout to go through, is not stalled: what
// counts is that it keeps taking data.
func TestTCPSendToASlowReaderGoesOn(t *testing.T) {
	ln := listenTCP(t, nil, 0)
	client, server := tcpPair(t, ln, &TCPDialer{Addr: ln.Addr()})
	const timeout, pause = 2 * time.Second, 250 * time.Millisecond
	client.SetSendTimeout(timeout)
	frame := patterned(12<<20, 3)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- client.Send(frame) }()
	raw := server.(*tcpConn).c
	buf := make([]byte, 1<<20)
	got := 0
	for got < 4+len(frame) {
		time.Sleep(pause)
		n, err := io.ReadFull(raw, buf[:min(len(buf), 4+len(frame)-got)])
		if err != nil {
			t.Fatalf("after %d bytes: %v", got+n, err)
		}
		got += n
	}
	if err := <-done; err != nil {
		t.Fatalf("Send to a reader that kept reading failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("%d MiB taken in %v with a send timeout of %v", len(frame)>>20, time.Since(start).Round(time.Millisecond), timeout)
}

// TestTCPConnsAreBoundedByDefault: a connection nobody set a timeout on is
// still bounded, so no sender of either side waits for ever.
func TestTCPConnsAreBoundedByDefault(t *testing.T) {
	ln := listenTCP(t, nil, 0)
	client, server := tcpPair(t, ln, &TCPDialer{Addr: ln.Addr()})
	for _, c := range []Conn{client, server} {
		tc := c.(*tcpConn)
		if got := tc.stall.Load(); got != 0 {
			t.Fatalf("send timeout %v before any was set", time.Duration(got))
		}
	}
	client.SetSendTimeout(-time.Second)
	if got := client.(*tcpConn).stall.Load(); got != 0 {
		t.Fatalf("a negative send timeout was kept as %v: it must mean the default", time.Duration(got))
	}
}

// TestMemStalledPeer: the in-memory link's stall behaves as a peer that
// stops reading over TCP: frames wait, a Send waits once the buffer is
// full and fails with ErrStalled after its timeout, cutting the
// connection; a stall that ends in time loses nothing.
func TestMemStalledPeer(t *testing.T) {
	n := NewMemNetwork(1, Faults{})

	// A stall that ends before the send timeout: everything arrives, in order.
	client, server := memPair(t, n)
	client.SetSendTimeout(time.Minute)
	n.SetStalled(true)
	sent := make(chan error, 1)
	go func() {
		for i := range 16 {
			f := make([]byte, 64<<10)
			f[0] = byte(i)
			if err := client.Send(f); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	got := make(chan byte, 16)
	go func() {
		for range 16 {
			f, err := server.Recv()
			if err != nil {
				return
			}
			got <- f[0]
		}
	}()
	select {
	case <-got:
		t.Fatal("a stalled peer received a frame")
	case err := <-sent:
		t.Fatalf("16 frames of 64 KiB went to a stalled peer without waiting (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	n.SetStalled(false)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	for i := range 16 {
		if b := <-got; b != byte(i) {
			t.Fatalf("frame %d arrived as %d", i, b)
		}
	}

	// A stall that outlasts the send timeout fails the send and cuts the link.
	client, server = memPair(t, n)
	client.SetSendTimeout(200 * time.Millisecond)
	n.SetStalled(true)
	defer n.SetStalled(false)
	var err error
	for i := 0; i < 64 && err == nil; i++ {
		err = client.Send(make([]byte, 64<<10))
	}
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("4 MiB to a stalled peer: got %v, want ErrStalled", err)
	}
	if _, err := server.Recv(); err == nil {
		t.Fatal("the stalled peer still receives on a connection its sender gave up")
	}
}
