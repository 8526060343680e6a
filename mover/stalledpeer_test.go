package mover

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"duplex/ratelimit"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
)

// TestLinkToASecondaryThatStopsReadingIsGivenUp: a secondary that stops
// reading its connection (its process stopped or hung, its disk not
// answering) keeps TCP alive, every probe answered with a zero window. The
// mover must still find the link dead once the secondary has said nothing
// for its silence time, so that the session sees the link down and
// suspends into bitmaps before writes wait for sidefile space for ever. A
// record set larger than what the sockets buffer must not block the mover
// in a send that nothing ends.
func TestLinkToASecondaryThatStopsReadingIsGivenUp(t *testing.T) {
	r := startStalled(t, 100*time.Millisecond, 500*time.Millisecond)
	defer r.stop(t)
	m := r.m
	// Silence is 500ms: without the send timeout the link would count as
	// connected for as long as the secondary holds it.
	end := time.Now().Add(deadline)
	for m.Stats().Connected {
		if time.Now().After(end) {
			t.Fatalf("the secondary has said nothing for %v (silence time 500ms) and stopped reading, yet the link still counts as connected "+
				"(held record sets %d): the session never sees it down, never suspends, and writes wait for sidefile space for ever", deadline, m.Stats().HeldSets)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stalledRig is a mover linked to a secondary played by hand that
// welcomed it and then never read again, with 48 MiB of writes to ship,
// more than the sockets on both sides buffer, and its link cut so that it
// sends them at once.
type stalledRig struct {
	m      *Mover
	cancel context.CancelFunc
	done   chan error // Run's result
	// sending is the length of the frame being sent, 0 between sends.
	sending atomic.Int64
	// peer is the secondary's end of the link.
	peer transport.Conn
}

// stop ends Run's context and waits for Run to return: a primary's
// SIGTERM waits for it.
func (r *stalledRig) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(deadline):
		t.Errorf("Run did not return within %v of its context's end (a primary's SIGTERM waits for it): it is blocked sending to the stalled secondary (a send of %d bytes under way)",
			deadline, r.sending.Load())
	}
}

// watched is a connection whose sends the rig follows, so that a test can
// tell when the mover waits in one.
type watched struct {
	transport.Conn
	r *stalledRig
}

func (c watched) Send(f []byte) error {
	c.r.sending.Store(int64(len(f)))
	defer c.r.sending.Store(0)
	return c.Conn.Send(f)
}

func (c watched) SendVec(bufs [][]byte) error {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	c.r.sending.Store(int64(n))
	defer c.r.sending.Store(0)
	return transport.SendVec(c.Conn, bufs)
}

// SetSendBegins forwards to the connection watched, a paced one
// (transport.SendBegins).
func (c watched) SetSendBegins(began func()) {
	if sb, ok := c.Conn.(transport.SendBegins); ok {
		sb.SetSendBegins(began)
	}
}

type watchedDialer struct {
	transport.Dialer
	r *stalledRig
}

func (d watchedDialer) Dial(ctx context.Context) (transport.Conn, error) {
	c, err := d.Dialer.Dial(ctx)
	if err != nil {
		return nil, err
	}
	return watched{Conn: c, r: d.r}, nil
}

// stalledBytes is what a stalledRig has written to ship.
const stalledBytes = 48 << 20

// startStalled runs a stalledRig whose mover retransmits and gives the
// link up after the times given. The connection is closed last, at the
// end of the test: until then nothing but the end of Run's context may
// unblock the mover.
func startStalled(t *testing.T, retransmit, silence time.Duration) *stalledRig {
	t.Helper()
	return startStalledAt(t, retransmit, silence, nil, false)
}

// startStalledAt is startStalled with the link paced by limit (nil: not
// paced). lead: a small record set is sent first, on its own, which the
// secondary never answers.
func startStalledAt(t *testing.T, retransmit, silence time.Duration, limit *ratelimit.Limiter, lead bool) *stalledRig {
	t.Helper()
	return startStalledHeld(t, retransmit, silence, limit, lead, 0)
}

// startStalledHeld is startStalledAt with the mover's HeldSend (0: its
// default).
func startStalledHeld(t *testing.T, retransmit, silence time.Duration, limit *ratelimit.Limiter, lead bool, held time.Duration) *stalledRig {
	t.Helper()
	ln, accepted := listenAccepting(t)
	var dialer transport.Dialer = &transport.TCPDialer{Addr: ln.Addr()}
	if limit != nil {
		dialer = &transport.LimitedDialer{Dialer: dialer, Limit: limit}
	}
	v, err := volume.Open(filepath.Join(t.TempDir(), "a.img"), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	tm := timer.New()
	ss := subsystem.New("ss1", tm, sidefile.New(256<<20), map[string]*volume.Volume{"a": v}, []string{"a"})
	r := &stalledRig{done: make(chan error, 1)}
	// The lead set in flight leaves the 48 MiB one out of a window of less.
	window := int64(0)
	if lead {
		window = 1 << 30
	}
	m := New(Config{Window: window, Session: session, Subsystems: []*subsystem.Subsystem{ss}, Timer: tm, Interval: time.Hour,
		Dialer: watchedDialer{Dialer: dialer, r: r}, Retransmit: retransmit, Silence: silence, HeldSend: held,
		HandshakeTimeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var conn transport.Conn
	t.Cleanup(func() {
		if conn != nil {
			conn.Close()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r.m, r.cancel = m, cancel
	go func() { r.done <- m.Run(ctx) }()

	select {
	case conn = <-accepted:
	case <-time.After(deadline):
		t.Fatal("the mover did not connect")
	}
	if _, err := conn.Recv(); err != nil {
		t.Fatalf("hello: %v", err)
	}
	if err := conn.Send(transport.EncodePosition(transport.TypeWelcome, transport.Position{})); err != nil {
		t.Fatal(err)
	}
	r.peer = conn
	waitFor(t, "the link", func() bool { return m.Stats().Connected })
	if lead {
		if err := ss.Write(context.Background(), "a", make([]byte, 4<<10), stalledBytes); err != nil {
			t.Fatal(err)
		}
		m.Cut()
		waitFor(t, "the small record set sent", func() bool { return m.Stats().BytesSent > 4<<10 })
	}
	data := make([]byte, 1<<20)
	for i := range stalledBytes >> 20 {
		data[0] = byte(i)
		if err := ss.Write(context.Background(), "a", data, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
	}
	m.Cut()
	return r
}

// listenAccepting listens on a loopback port and hands every connection
// it accepts to the channel, for tests that play a secondary by hand.
func listenAccepting(t *testing.T) (*transport.TCPListener, <-chan transport.Conn) {
	t.Helper()
	ln, err := transport.ListenTCP("127.0.0.1:0", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan transport.Conn, 4)
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			accepted <- conn
		}
	}()
	return ln, accepted
}
