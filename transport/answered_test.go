package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
	for _, useTLS := range []bool{false, true} {
		t.Run(tlsName(useTLS), func(t *testing.T) {
			peer, sender := tcpPairOver(t, useTLS)
			// Over TLS the deadline is moved on by a timer every quarter of
			// the timeout: one late by three quarters on a loaded machine
			// under the race detector ends the Send, as 200ms did.
			const timeout = 2 * time.Second
			sender.SetSendTimeout(timeout)
			sender.SetAnswered(time.Now)
			frame := patterned(48<<20, 5)
			done := make(chan error, 1)
			go func() { done <- sender.Send(frame) }()
			// Set again while the Send waits: the race detector judges it.
			for range 6 {
				time.Sleep(timeout / 2)
				sender.SetAnswered(time.Now)
			}
			select {
			case err := <-done:
				t.Fatalf("a Send held by a peer that answers ended %v in (send timeout %v): %v", 3*timeout, timeout, err)
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
	client, server := memPair(t, n)
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

// TestTCPSendAnsweredOnlyOnceItWaitsWaits: SetAnswered called only once a
// Send is under way holds that Send as one called before it does, with
// and without TLS: over TLS the write's deadline cannot be tried again
// once it passed, so it must be moved on while the write waits whenever
// the peer is seen to answer, not only if it was seen to before.
func TestTCPSendAnsweredOnlyOnceItWaitsWaits(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(tlsName(useTLS), func(t *testing.T) {
			peer, sender := tcpPairOver(t, useTLS)
			// As above: the timer that moves a TLS deadline on may be late.
			const timeout = 2 * time.Second
			sender.SetSendTimeout(timeout)
			frame := make([]byte, 48<<20)
			done := make(chan error, 1)
			go func() { done <- sender.Send(frame) }()
			// The first byte read says the Send began; the peer then reads
			// nothing more, and answers from then on.
			raw := peer.(*tcpConn).c
			if _, err := io.ReadFull(raw, make([]byte, 1)); err != nil {
				t.Fatalf("the Send's first byte: %v", err)
			}
			sender.SetAnswered(time.Now)
			select {
			case err := <-done:
				t.Fatalf("a Send held by a peer that answers from its start on ended within %v (send timeout %v): %v", 3*timeout, timeout, err)
			case <-time.After(3 * timeout):
			}
			if _, err := io.CopyN(io.Discard, raw, int64(4+len(frame)-1)); err != nil {
				// Closing a TLS connection the peer does not read waits
				// for its close alert to time out: the Send may end late.
				select {
				case serr := <-done:
					t.Fatalf("the peer reading again: %v; the Send, held by a peer that answers: %v", err, serr)
				case <-time.After(30 * time.Second):
					t.Fatalf("the peer reading again: %v; the Send has not returned after 30s", err)
				}
			}
			if err := <-done; err != nil {
				t.Fatalf("the held Send, once the peer read again: %v", err)
			}
		})
	}
}
