package secondary

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"duplex/transport"
)

// stallFirst stalls only the first connection it accepts, as a primary
// process that stopped reading while its successor runs.
type stallFirst struct {
	transport.Listener
	first *stallListener
	n     int
}

func (l *stallFirst) Accept(ctx context.Context) (transport.Conn, error) {
	c, err := l.Listener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	if l.n++; l.n == 1 {
		return &stallConn{Conn: c, l: l.first}, nil
	}
	return c, nil
}

// TestNewPrimaryTakesOverFromAStalledOne: while the acknowledgement to a
// primary that stopped reading waits, a new primary connection is welcomed
// at once, at the group journaled for the stalled one, and replicates.
func TestNewPrimaryTakesOverFromAStalledOne(t *testing.T) {
	sec := openVolumeA(t)
	net := transport.NewMemNetwork(1, transport.Faults{})
	ln := &stallFirst{Listener: net, first: &stallListener{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sec.Run(ctx, ln) }()
	defer func() {
		ln.first.unstall()
		cancel()
		<-done
	}()

	link := func(instance uint64) transport.Conn {
		t.Helper()
		conn, body := linkVolumeA(t, ctx, net, instance)
		p, err := transport.DecodePosition(body)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("primary %d welcomed at group %d", instance, p.Group)
		return conn
	}
	old := link(7)
	sendAndWait(t, old, writeSet(1, 1000, write("a", 0)))
	ln.first.stall()
	sendRecordSet(t, old, writeSet(2, 5000, write("a", 4096)))
	waitFor(t, "group 2 journaled", func() bool { return sec.journal.LastIndex() >= 2 })

	// A Welcome that waited for the stalled send would come after 10 s
	// (recvFrame's limit) only if the send timeout were shorter.
	conn := link(8)
	sendAndWait(t, conn, writeSet(3, 9000, write("a", 8192)))
	if st := sec.Stats(); !st.Connected || st.JournaledGroup != 3 {
		t.Fatalf("after the new primary's record set: connected %v, journaled group %d; want connected, 3", st.Connected, st.JournaledGroup)
	}
}

// blockingConn takes frames only when the test lets it, or fails them.
type blockingConn struct {
	transport.Conn
	mu     sync.Mutex
	sent   [][]byte
	gate   chan struct{}
	fail   error
	closed chan struct{}
	once   sync.Once
}

func (c *blockingConn) Send(f []byte) error {
	<-c.gate
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	c.sent = append(c.sent, f)
	return nil
}

func (c *blockingConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }
func (c *blockingConn) Peer() string { return "test" }

// The outbox keeps the order of what is queued; an acknowledgement not yet
// sent is replaced by the next (they are cumulative), nothing else is; the
// connection closes after the last frame. Acknowledgements by index are
// acknowledgements too.
func TestOutboxKeepsOrderAndSendsTheLatestAck(t *testing.T) {
	x := transport.NewSubsystemIndex([]string{"ss1"})
	for name, ack := range map[string]func(g uint64) []byte{
		"named": func(g uint64) []byte {
			return transport.EncodePosition(transport.TypeAck, transport.Position{Group: g})
		},
		"indexed": func(g uint64) []byte {
			return x.EncodeAck(transport.Position{Group: g, Through: map[string]uint64{"ss1": g}})
		},
	} {
		t.Run(name, func(t *testing.T) { testOutboxOrder(t, ack) })
	}
}

func testOutboxOrder(t *testing.T, ack func(g uint64) []byte) {
	c := &blockingConn{gate: make(chan struct{}), closed: make(chan struct{})}
	o := newOutbox(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	welcome := transport.EncodePosition(transport.TypeWelcome, transport.Position{Group: 1})
	o.put(welcome)
	o.put(ack(2)) // the outbox may be sending the Welcome or this already
	o.put(ack(3))
	o.put(ack(4))
	refusal := transport.EncodeRefuse(transport.Refusal{Reason: "stopped"})
	o.end(refusal)
	o.put(ack(5)) // after the end: dropped
	close(c.gate)
	o.wait()
	select {
	case <-c.closed:
	default:
		t.Fatal("the connection is open after the last frame was sent")
	}
	var groups []uint64
	for i, f := range c.sent {
		typ, body, err := transport.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i == 0 && typ != transport.TypeWelcome:
			t.Fatalf("frame 1 of type %d, want the Welcome", typ)
		case i == len(c.sent)-1 && typ != transport.TypeRefuse:
			t.Fatalf("last frame of type %d, want the refusal", typ)
		case typ == transport.TypeAck:
			p, err := transport.DecodePosition(body)
			if err != nil {
				t.Fatal(err)
			}
			groups = append(groups, p.Group)
		case typ == transport.TypeIndexedAck:
			var tables transport.IndexedTables
			p, err := transport.DecodeIndexedAck(body, 1, &tables)
			if err != nil {
				t.Fatal(err)
			}
			groups = append(groups, p.Group)
		}
	}
	// The first Send holds the outbox until the gate opens, with the
	// Welcome at most taken: the acknowledgements wait behind it, each
	// replacing the one before.
	if !slices.Equal(groups, []uint64{4}) {
		t.Fatalf("acknowledgements sent for groups %v: want the last alone, of group 4", groups)
	}
}

// A send that fails (the send timeout gave a stalled primary up) closes the
// connection, so that the primary's serve ends and another can link; the
// outbox sends nothing more.
func TestOutboxGivesUpOnAFailedSend(t *testing.T) {
	c := &blockingConn{gate: make(chan struct{}), closed: make(chan struct{}), fail: transport.ErrStalled}
	o := newOutbox(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.put(transport.EncodePosition(transport.TypeAck, transport.Position{Group: 1}))
	close(c.gate)
	select {
	case <-c.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection is still open 10s after a send failed")
	}
	o.wait()
	o.put(transport.EncodePosition(transport.TypeAck, transport.Position{Group: 2}))
	if len(c.sent) != 0 || !errors.Is(c.fail, transport.ErrStalled) {
		t.Fatalf("sent %d frames over a failed connection", len(c.sent))
	}
}
