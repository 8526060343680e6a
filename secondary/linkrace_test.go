package secondary

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
)

// TestNoPrimaryLinksAfterAFenceOrAStop: serve checks a primary's Hello
// before it links it, partly without the lock. A Fence (recover) or a stop
// that lands after those checks, before the link, finds no primary to
// disconnect: the primary must then be refused where it is linked, or it
// replicates into volumes recover took over, or into a secondary that can
// make nothing durable.
func TestNoPrimaryLinksAfterAFenceOrAStop(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		land         func(s *Secondary)
	}{
		{"fence", "fenced by duplex recover", func(s *Secondary) {
			if _, err := s.Fence(); err != nil {
				t.Errorf("Fence: %v", err)
			}
		}},
		{"stop", "secondary stopped", func(s *Secondary) {
			s.mu.Lock()
			s.stop(errors.New("the journal's disk failed"))
			s.mu.Unlock()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, map[string]int64{"a": 1 << 20})
			landed := false
			r.sec.beforeLink = func() {
				if !landed {
					landed = true
					tc.land(r.sec)
				}
			}
			_, typ, body := r.dial(r.hello())
			if !landed {
				t.Fatal("the hook before the link never ran")
			}
			if typ != transport.TypeRefuse {
				t.Fatalf("the primary whose Hello was checked before the %s: frame type %d, want a refusal (it was linked after the %s)", tc.name, typ, tc.name)
			}
			reason, err := refusalReason(body)
			if err != nil || !strings.Contains(reason, tc.reason) {
				t.Fatalf("refused with %q (%v), want a reason naming %q", reason, err, tc.reason)
			}
			if st := r.sec.Stats(); st.Connected {
				t.Fatalf("status says a primary is connected after the %s", tc.name)
			}
		})
	}
}

// holdingListener hands out connections whose Send, once held, waits until
// the connection is closed, as a send to a primary that stopped reading
// waits on a socket whose buffers are full (the send timeout, 30 s by
// default, left out).
type holdingListener struct {
	transport.Listener
	mu      sync.Mutex
	held    bool
	release chan struct{} // closed at the end of the test: every send goes on
}

func (l *holdingListener) Accept(ctx context.Context) (transport.Conn, error) {
	c, err := l.Listener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return &holdingConn{Conn: c, l: l, closed: make(chan struct{})}, nil
}

func (l *holdingListener) hold() {
	l.mu.Lock()
	l.held = true
	l.mu.Unlock()
}

type holdingConn struct {
	transport.Conn
	l      *holdingListener
	once   sync.Once
	closed chan struct{}
}

func (c *holdingConn) Send(f []byte) error {
	c.l.mu.Lock()
	held := c.l.held
	c.l.mu.Unlock()
	if held {
		select {
		case <-c.closed:
			return fmt.Errorf("send: %w", transport.ErrClosed)
		case <-c.l.release:
		}
	}
	return c.Conn.Send(f)
}

func (c *holdingConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestShutdownClosesARefusedPrimaryThatDoesNotRead: a primary refused while
// linked is sent the refusal before its connection closes; if it does not
// read, serve waits for that send, no longer linked. The shutdown must
// close that connection as well, or it waits for the send timeout.
func TestShutdownClosesARefusedPrimaryThatDoesNotRead(t *testing.T) {
	dir := t.TempDir()
	v, err := volume.Open(filepath.Join(dir, "a.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	sec, err := Open(Config{Session: rigSession, Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"a": v},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"), MaxFrame: 64 << 10,
		Limits: recordset.DefaultLimits, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer sec.Close()
	net := transport.NewMemNetwork(1, transport.Faults{})
	ln := &holdingListener{Listener: net, release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sec.Run(ctx, ln) }()
	returned := false
	defer func() {
		cancel()
		close(ln.release)
		if !returned {
			<-done
		}
	}()

	conn, err := net.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h := transport.Hello{Session: rigSession, Subsystems: []string{"ss1"}, Instance: 7, Generation: 1,
		Volumes: []transport.VolumeInfo{{Name: "a", Size: 1 << 20}}}
	if err := conn.Send(transport.EncodeHello(h)); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := recvFrame(conn, 10*time.Second); err != nil || typ != transport.TypeWelcome {
		t.Fatalf("answer to the hello: type %d, %v; want a Welcome", typ, err)
	}
	// The primary stops reading, and sends a frame larger than the
	// secondary takes: it is refused, and the refusal cannot be sent.
	ln.hold()
	if err := conn.Send(transport.Frame(transport.TypeRecordSet, make([]byte, 128<<10))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refused primary let go of", func() bool { st := sec.Stats(); return st.Refused > 0 && !st.Connected })

	cancel()
	select {
	case err := <-done:
		returned = true
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context ended: the shutdown left the refused primary's connection open, " +
			"its refusal waiting to be sent (a real connection waits for the send timeout)")
	}
}

// slowCloseListener hands out connections whose Close waits until the test
// lets it go on, as closing a TLS connection waits (up to 5 s) to send
// close_notify to a primary that stopped reading.
type slowCloseListener struct {
	transport.Listener
	closing chan struct{} // closed when a Close begins
	once    sync.Once
	release chan struct{}
}

func (l *slowCloseListener) Accept(ctx context.Context) (transport.Conn, error) {
	c, err := l.Listener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return &slowCloseConn{Conn: c, l: l}, nil
}

type slowCloseConn struct {
	transport.Conn
	l *slowCloseListener
}

func (c *slowCloseConn) Close() error {
	c.l.once.Do(func() { close(c.l.closing) })
	<-c.l.release
	return c.Conn.Close()
}

// TestSlowCloseHoldsNothing: the connection a Fence (recover) or a new
// primary's takeover lets go of is closed outside the secondary's lock:
// a close that waits on the old primary must not hold status (and with it
// everything else that takes the lock) meanwhile.
func TestSlowCloseHoldsNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  func(r *rig)
	}{
		{"fence", func(r *rig) { r.sec.Fence() }},
		{"takeover", func(r *rig) {
			// A new primary's Hello: serve links it in place of the old.
			conn, err := r.net.Dial(context.Background())
			if err != nil {
				r.t.Error(err)
				return
			}
			r.t.Cleanup(func() { conn.Close() })
			h := r.hello()
			h.Instance = 8
			if err := conn.Send(transport.EncodeHello(h)); err != nil {
				r.t.Error(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, map[string]int64{"a": 1 << 20})
			// Run again over a listener whose connections close slowly.
			r.cancel()
			if err := <-r.done; err != nil {
				t.Fatal(err)
			}
			ln := &slowCloseListener{Listener: r.net, closing: make(chan struct{}), release: make(chan struct{})}
			released := false
			let := func() {
				if !released {
					released = true
					close(ln.release)
				}
			}
			defer let()
			ctx, cancel := context.WithCancel(context.Background())
			r.cancel, r.done = cancel, make(chan error, 1)
			go func() { r.done <- r.sec.Run(ctx, ln) }()

			r.dial(r.hello())
			acted := make(chan struct{})
			go func() {
				defer close(acted)
				tc.act(r)
			}()
			select {
			case <-ln.closing:
			case <-time.After(10 * time.Second):
				t.Fatal("the old connection was never closed")
			}
			stats := make(chan struct{})
			go func() {
				r.sec.Stats()
				close(stats)
			}()
			select {
			case <-stats:
			case <-time.After(10 * time.Second):
				t.Fatalf("status waited while the %s closed the old connection: the close holds the secondary's lock", tc.name)
			}
			let()
			<-acted
		})
	}
}
