package secondary

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/transport"
)

// heldSendListener hands out connections whose sends, once held, wait
// until the connection is closed, and then fail as a closed one's do.
type heldSendListener struct {
	transport.Listener
	mu      sync.Mutex
	conns   []*heldSendConn
	waiting chan struct{} // closed when a held send began to wait
}

func (l *heldSendListener) Accept(ctx context.Context) (transport.Conn, error) {
	c, err := l.Listener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	hc := &heldSendConn{Conn: c, l: l, closed: make(chan struct{})}
	l.mu.Lock()
	l.conns = append(l.conns, hc)
	l.mu.Unlock()
	return hc, nil
}

type heldSendConn struct {
	transport.Conn
	l      *heldSendListener
	held   bool // under l.mu
	once   sync.Once
	closed chan struct{}
}

func (c *heldSendConn) Send(f []byte) error {
	c.l.mu.Lock()
	held := c.held
	c.l.mu.Unlock()
	if held {
		close(c.l.waiting)
		<-c.closed
	}
	return c.Conn.Send(f)
}

func (c *heldSendConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestALinkReplacedByANewerOneEndsAtInfo: a primary dials again while the
// secondary is sending it an acknowledgement on the first link (a primary
// that stopped reading, and whose process dialed anew). The newer link
// replaces the first, whose connection the secondary closes, and the send
// under way fails for that close alone: the first link's end is logged at
// Info, as unlinked by the secondary, not at Warn as a failed send; nothing
// of it is lost (the newer Welcome holds the group acknowledged or not).
func TestALinkReplacedByANewerOneEndsAtInfo(t *testing.T) {
	const chunk = 16 << 10
	mem := transport.NewMemNetwork(1, transport.Faults{})
	ln := &heldSendListener{Listener: mem, waiting: make(chan struct{})}
	r := startFramesRig(t, 4*chunk, nil, ln)
	want := map[string][]byte{"vol1": make([]byte, 4*chunk), "vol2": make([]byte, 4*chunk)}
	link := func() (transport.Conn, transport.Position) {
		conn, err := mem.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if err := conn.Send(r.hello()); err != nil {
			t.Fatal(err)
		}
		typ, body, err := recvFrame(conn, 10*time.Second)
		if err != nil || typ != transport.TypeWelcome {
			t.Fatalf("no Welcome: frame type %d, %v", typ, err)
		}
		w, err := transport.DecodePosition(body)
		if err != nil {
			t.Fatal(err)
		}
		return conn, w
	}
	first, _ := link()
	ln.mu.Lock()
	ln.conns[0].held = true
	ln.mu.Unlock()
	if err := first.Send(transport.EncodeBundle(transport.Bundle{Sets: [][]byte{
		oneUpdateSet(t, want, chunk, "ss1", "vol1", 1, 1000), oneUpdateSet(t, want, chunk, "ss2", "vol2", 1, 1001)}})); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ln.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the acknowledgement of group 1 was never sent")
	}
	_, w := link()
	if w.Group != 1 {
		t.Errorf("the newer Welcome says group %d, want 1", w.Group)
	}
	line := waitLogged(t, r.logs, "peer=mem-primary")
	if !strings.Contains(line, "level=INFO") || !strings.Contains(line, "unlinked by the secondary") {
		t.Errorf("the replaced link's end logged as %q, want at Info, unlinked by the secondary", line)
	}
	if n := strings.Count(r.logs.String(), "level=WARN"); n != 0 {
		t.Errorf("%d lines at Warn for a link replaced; the log:\n%s", n, r.logs.String())
	}
}
