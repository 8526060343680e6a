package secondary

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/transport"
)

// gatingListener hands out connections whose Recv, once gated, lets one
// more frame through and then waits until the secondary closes the
// connection: the frames the primary sent after it stay unread on the
// link, as they do in a socket's buffer when the reader falls behind.
// Their Send, once gated, waits until primaryClosed is closed: what the
// secondary sends then finds the primary's end closed.
type gatingListener struct {
	transport.Listener
	mu            sync.Mutex
	gated         bool
	primaryClosed chan struct{}
}

func (l *gatingListener) Accept(ctx context.Context) (transport.Conn, error) {
	c, err := l.Listener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return &gatingConn{Conn: c, l: l, closed: make(chan struct{})}, nil
}

func (l *gatingListener) gate() {
	l.mu.Lock()
	l.gated = true
	l.mu.Unlock()
}

type gatingConn struct {
	transport.Conn
	l      *gatingListener
	passed bool // the one frame let through once gated
	once   sync.Once
	closed chan struct{}
}

func (c *gatingConn) Recv() ([]byte, error) {
	c.l.mu.Lock()
	gated := c.l.gated
	c.l.mu.Unlock()
	if gated {
		if c.passed {
			<-c.closed
		}
		c.passed = true
	}
	return c.Conn.Recv()
}

func (c *gatingConn) Send(f []byte) error {
	c.l.mu.Lock()
	gated := c.l.gated
	c.l.mu.Unlock()
	if gated {
		<-c.l.primaryClosed
	}
	return c.Conn.Send(f)
}

// Close closes the connection before it lets a gated Recv go on: let go
// first, the Recv could read the frames left unread, and the primary's
// end after them, before the connection closes.
func (c *gatingConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// TestFramesUnreadWhenTheLinkIsGivenUpAreSentAgainFromTheWelcome: a
// primary sends frames and closes its end; the secondary, behind, reads one
// or two of them, acknowledges their groups, and that send fails: it gives the
// connection up, and the frames it had not read are lost with it. Nothing
// acknowledged is lost (the next Welcome holds every group and record set
// acknowledged), the volumes hold the groups journaled and nothing after
// them, and a primary that sends again what the Welcome says is missing
// has every set applied; one that sent again only its last frames would
// wait for ever for the sets the secondary never read. The link's end is
// logged, at Warn, with the failed send.
func TestFramesUnreadWhenTheLinkIsGivenUpAreSentAgainFromTheWelcome(t *testing.T) {
	const chunk, sets, gateAt = 16 << 10, 12, 4
	volSize := int64(sets * chunk)
	mem := transport.NewMemNetwork(1, transport.Faults{})
	ln := &gatingListener{Listener: mem, primaryClosed: make(chan struct{})}
	r := startFramesRig(t, volSize, nil, ln)
	want := map[string][]byte{"vol1": make([]byte, volSize), "vol2": make([]byte, volSize)}
	encoded := map[string][][]byte{"ss1": make([][]byte, sets+1), "ss2": make([][]byte, sets+1)}
	for seq := 1; seq <= sets; seq++ {
		ts := int64(seq) * 1000
		encoded["ss1"][seq] = oneUpdateSet(t, want, chunk, "ss1", "vol1", uint64(seq), ts)
		encoded["ss2"][seq] = oneUpdateSet(t, want, chunk, "ss2", "vol2", uint64(seq), ts+1)
	}
	// Frame n brings ss2's set n-1 and ss1's set n, whose group waits for
	// ss2's in frame n+1; those past have, none if all are.
	frame := func(n int, have map[string]uint64) []byte {
		var b [][]byte
		if n > 1 && uint64(n-1) > have["ss2"] {
			b = append(b, encoded["ss2"][n-1])
		}
		if n <= sets && uint64(n) > have["ss1"] {
			b = append(b, encoded["ss1"][n])
		}
		if len(b) == 0 {
			return nil
		}
		return transport.EncodeBundle(transport.Bundle{Sets: b})
	}
	link := func() (transport.Conn, transport.Position, *memAcks) {
		conn, err := mem.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if err := conn.Send(r.hello()); err != nil {
			t.Fatal(err)
		}
		f, err := conn.Recv()
		if err != nil {
			t.Fatal(err)
		}
		typ, body, err := transport.Open(f)
		if err != nil || typ != transport.TypeWelcome {
			t.Fatalf("no Welcome: frame type %d, %v", typ, err)
		}
		w, err := transport.DecodePosition(body)
		if err != nil {
			t.Fatal(err)
		}
		return conn, w, readMemAcks(conn)
	}
	conn, _, acks := link()
	for n := 1; n <= gateAt; n++ {
		if err := conn.Send(frame(n, nil)); err != nil {
			t.Fatal(err)
		}
	}
	acks.waitGroup(t, gateAt-1)
	// The secondary reads one more frame, and no other until it gives the
	// connection up; the primary sends the rest and closes its end.
	ln.gate()
	for n := gateAt + 1; n <= sets+1; n++ {
		if err := conn.Send(frame(n, nil)); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	close(ln.primaryClosed)
	acked := acks.ended()
	waitLogged(t, r.logs, "level=WARN", "sending to it failed", "peer=mem-primary")
	// One failure, one Warn: the link's end says it, with the send's
	// error; the outbox that met it does not say it again.
	if n := strings.Count(r.logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d lines at Warn for one failed send, want 1; the log:\n%s", n, r.logs.String())
	}
	for r.sec.Stats().Connected {
		time.Sleep(time.Millisecond)
	}
	ln.mu.Lock()
	ln.gated = false
	ln.mu.Unlock()
	// Applied through the journaled groups: the volumes hold each group
	// journaled and nothing of the sets after it.
	deadline := time.Now().Add(time.Minute)
	for st := r.sec.Stats(); st.Group < st.JournaledGroup; st = r.sec.Stats() {
		if time.Now().After(deadline) {
			r.stalled("the journaled groups not applied")
		}
		time.Sleep(time.Millisecond)
	}
	st := r.sec.Stats()
	upTo := map[string][]byte{}
	for vol, b := range want {
		upTo[vol] = make([]byte, len(b))
		copy(upTo[vol], b[:int(st.Group)*chunk])
	}
	r.checkVolumes(upTo, "the groups journaled", chunk, "a group applied without one it depends on, or with part of a later one")

	conn, w, _ := link()
	checkNothingAckedLost(t, acked, w)
	have := map[string]uint64{}
	for _, sub := range framesSubs {
		have[sub] = max(w.Through[sub], w.Received[sub])
	}
	if have["ss1"] >= sets {
		t.Fatalf("the secondary received ss1's sets through %d of %d: no frame was left unread when it gave the link up", have["ss1"], sets)
	}
	for n := 1; n <= sets+1; n++ {
		if f := frame(n, have); f != nil {
			if err := conn.Send(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.waitApplied(uint64(2*sets*chunk), deadline)
	r.checkVolumes(want, "what was sent", chunk, "a set sent again from the Welcome was lost")
}

// memAcks reads the acknowledgements on a primary's in-memory connection:
// the last one's Through and group, the highest Received of any.
type memAcks struct {
	mu    sync.Mutex
	group uint64
	pos   transport.Position
	done  chan struct{}
}

func readMemAcks(conn transport.Conn) *memAcks {
	a := &memAcks{pos: transport.Position{Through: map[string]uint64{}, Received: map[string]uint64{}}, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for {
			f, err := conn.Recv()
			if err != nil {
				return
			}
			typ, body, err := transport.Open(f)
			if err != nil || typ != transport.TypeAck {
				continue
			}
			p, err := transport.DecodePosition(body)
			if err != nil {
				continue
			}
			a.mu.Lock()
			a.group = max(a.group, p.Group)
			a.pos.Through = p.Through
			for sub, n := range p.Received {
				a.pos.Received[sub] = max(a.pos.Received[sub], n)
			}
			a.mu.Unlock()
		}
	}()
	return a
}

// waitGroup waits until group g is acknowledged, and fails the test after
// 30 s.
func (a *memAcks) waitGroup(t *testing.T, g uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a.mu.Lock()
		acked := a.group
		a.mu.Unlock()
		if acked >= g {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %d not acknowledged in 30 s (acknowledged %d)", g, acked)
		}
		time.Sleep(time.Millisecond)
	}
}

// ended returns what was acknowledged, once the connection is closed.
func (a *memAcks) ended() transport.Position {
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pos
}
