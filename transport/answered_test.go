package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestTCPSendHeldByAPeerThatAnswersWaits: a peer that reads nothing for
// many send timeouts but answers (SetAnswered) holds a Send without its
// being given up, with and without TLS (where a write that times out
// breaks the connection for good), and the frame arrives whole once the
// peer reads again; SetAnswered may be called while the Send waits. A
// peer that then answers no more is given up as one that stopped reading.
func TestTCPSendHeldByAPeerThatAnswersWaits(t *testing.T) {
	ca := newCA(t, "duplex test CA")
	cert := ca.issue(t, "primary")
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ln := listenTCP(t, nil, 0)
			d := &TCPDialer{Addr: ln.Addr(), MaxRecv: 64 << 20}
			if tc.tls {
				ln = listenTCP(t, serverTLS(ca, ca.issue(t, "secondary")), 0)
				d = &TCPDialer{Addr: ln.Addr(), MaxRecv: 64 << 20, TLS: clientTLS(ca, &cert)}
			}
			peer, sender := tcpPair(t, ln, d)
			const timeout = 200 * time.Millisecond
			sender.SetSendTimeout(timeout)
			sender.SetAnswered(time.Now)
			frame := patterned(48<<20, 5)
			done := make(chan error, 1)
			go func() { done <- sender.Send(frame) }()
			// Set again while the Send waits: the race detector judges it.
			for range 10 {
				time.Sleep(timeout / 2)
				sender.SetAnswered(time.Now)
			}
			select {
			case err := <-done:
				t.Fatalf("a Send held by a peer that answers ended %v in (send timeout %v): %v", 5*timeout, timeout, err)
			default:
			}
			got, err := peer.Recv()
			if err != nil {
				t.Fatalf("the peer reading again: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("the held Send, once the peer read again: %v", err)
			}
			if !bytes.Equal(got, frame) {
				t.Fatalf("the held frame arrived as %d bytes, not the %d sent", len(got), len(frame))
			}

			long := time.Now().Add(-time.Hour)
			sender.SetAnswered(func() time.Time { return long })
			go func() { done <- sender.Send(frame) }()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("a Send to a peer that neither reads nor answers has not returned after 30s (send timeout %v)", timeout)
			}
			if !errors.Is(err, ErrStalled) {
				t.Fatalf("a Send to a peer that neither reads nor answers: got %v, want ErrStalled", err)
			}
		})
	}
}

// TestMemSendHeldByAPeerThatAnswersWaits: the in-memory link alike: a
// Send waiting on a stalled peer that answers waits on past its timeout,
// and goes through once the stall ends.
func TestMemSendHeldByAPeerThatAnswersWaits(t *testing.T) {
	n := NewMemNetwork(1, Faults{})
	ch := make(chan Conn, 1)
	go func() {
		c, err := n.Accept(context.Background())
		if err != nil {
			t.Error(err)
		}
		ch <- c
	}()
	client, err := n.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	server := <-ch
	const timeout = 100 * time.Millisecond
	client.SetSendTimeout(timeout)
	client.SetAnswered(time.Now)
	n.SetStalled(true)
	defer n.SetStalled(false)
	sent := make(chan error, 1)
	go func() {
		for i := range 64 {
			if err := client.Send(make([]byte, 64<<10)); err != nil {
				sent <- fmt.Errorf("frame %d: %w", i, err)
				return
			}
		}
		sent <- nil
	}()
	for range 10 {
		time.Sleep(timeout / 2)
		client.SetAnswered(time.Now)
	}
	select {
	case err := <-sent:
		t.Fatalf("4 MiB to a stalled peer that answers ended %v in (send timeout %v): %v", 5*timeout, timeout, err)
	default:
	}
	n.SetStalled(false)
	go func() {
		for range 64 {
			if _, err := server.Recv(); err != nil {
				return
			}
		}
	}()
	if err := <-sent; err != nil {
		t.Fatalf("the held sends, once the stall ended: %v", err)
	}
}
