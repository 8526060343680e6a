package transport

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
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

// TestGivingUpATLSLinkWaitsNotForItsCloseAlert: closing TLS writes a
// close alert first, under a deadline of its own, 5 s. A link is given up
// (its send stalled, its peer silent or held past its bounds) when the
// peer reads nothing, and a socket whose send buffer is full then has no
// room for the alert: the close waited out that deadline, 5 s in which
// the link counts as up and the next one waits. Giving a link up must not
// wait on the peer that made it give up.
func TestGivingUpATLSLinkWaitsNotForItsCloseAlert(t *testing.T) {
	for _, fromDial := range []bool{true, false} {
		name := "listener"
		if fromDial {
			name = "dialer"
		}
		t.Run(name, func(t *testing.T) {
			client, server := tcpPairOver(t, true)
			sender := client
			if !fromDial {
				sender = server
			}
			// Its buffer set, not grown by the kernel as the peer's
			// window shuts: full, it has no room for the alert.
			if err := tcpSocket(t, sender).SetWriteBuffer(64 << 10); err != nil {
				t.Fatal(err)
			}
			// What the sends wrote fills the socket, the peer reading
			// none of it: the last one waits for room until its deadline.
			tc := sender.(*tcpConn).c.(*tls.Conn)
			piece, written := make([]byte, 16<<10), 0
			for {
				if err := tc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
					t.Fatal(err)
				}
				n, err := tc.Write(piece)
				written += n
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				if err != nil {
					t.Fatalf("after %d bytes written: %v", written, err)
				}
			}
			const closeAlert = 5 * time.Second // TLS's deadline for it
			closed := make(chan error, 1)
			start := time.Now()
			go func() { closed <- sender.Close() }()
			select {
			case err := <-closed:
				t.Logf("closed %s after %d bytes the peer did not read: %v", time.Since(start).Round(time.Millisecond), written, err)
			case <-time.After(closeAlert):
				err := <-closed
				t.Fatalf("closing the TLS link, its socket full (%d bytes the peer did not read), took %s, %s or more: "+
					"it waited on that peer for room for its close alert (%v)", written, time.Since(start).Round(time.Millisecond), closeAlert, err)
			}
		})
	}
}

// tcpSocket is the TCP socket under c, a TLS connection.
func tcpSocket(t *testing.T, c Conn) *net.TCPConn {
	t.Helper()
	var nc net.Conn = c.(*tcpConn).c.(*tls.Conn)
	for {
		if s, ok := nc.(*net.TCPConn); ok {
			return s
		}
		under, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			t.Fatalf("no TCP socket under %T", nc)
		}
		nc = under.NetConn()
	}
}

// TestASendRacingATLSCloseIsNotCalledStalled: Close marks the socket under
// TLS closing (capping write deadlines to closeAlertWait for the close
// alert) a moment before TLS itself closes; a send that sets its deadline
// in that moment, the socket full, runs into the cap. Its peer did not
// stop taking data for the send timeout: the link was closed under it, and
// the mover, which reports a send's stall over the receive's error of a
// session being torn down, must not hear ErrStalled. The moment is held
// open here by marking the socket as Close does first, TLS not closed yet
// (a goroutine preempted between the two on a loaded machine).
func TestASendRacingATLSCloseIsNotCalledStalled(t *testing.T) {
	client, server := tcpPairOver(t, true)
	// Small buffers, set, not grown by the kernel: the frame below fills
	// them, the peer reading none of it.
	if err := tcpSocket(t, client).SetWriteBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	if err := tcpSocket(t, server).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	const timeout = 30 * time.Second
	client.SetSendTimeout(timeout)
	client.(*tcpConn).under.closing.Store(true)
	start := time.Now()
	err := client.Send(make([]byte, 4<<20))
	if errors.Is(err, ErrStalled) {
		t.Fatalf("a send on a link being closed (send timeout %s) says after %s that the peer stalled: %v",
			timeout, time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("send on a closing link, after %s: %v", time.Since(start).Round(time.Millisecond), err)
}
