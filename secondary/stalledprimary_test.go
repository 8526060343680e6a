package secondary

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
)

// stallListener hands out connections whose Send waits, while stalled, as
// a send on a socket whose peer stopped reading waits once the buffers are
// full: until the peer reads again or the send timeout passes (then the
// connection is cut and the Send fails with ErrStalled).
type stallListener struct {
	transport.Listener
	mu      sync.Mutex
	stalled bool
	resume  chan struct{}
}

func (l *stallListener) Accept(ctx context.Context) (transport.Conn, error) {
	c, err := l.Listener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, l: l}, nil
}

func (l *stallListener) stall() {
	l.mu.Lock()
	l.stalled, l.resume = true, make(chan struct{})
	l.mu.Unlock()
}

func (l *stallListener) unstall() {
	l.mu.Lock()
	if l.stalled {
		l.stalled = false
		close(l.resume)
	}
	l.mu.Unlock()
}

type stallConn struct {
	transport.Conn
	l       *stallListener
	timeout time.Duration
}

func (c *stallConn) SetSendTimeout(d time.Duration) { c.timeout = d; c.Conn.SetSendTimeout(d) }

func (c *stallConn) Send(f []byte) error {
	c.l.mu.Lock()
	stalled, resume := c.l.stalled, c.l.resume
	c.l.mu.Unlock()
	if stalled {
		limit := c.timeout
		if limit == 0 {
			limit = transport.DefaultSendTimeout
		}
		select {
		case <-resume:
		case <-time.After(limit):
			c.Conn.Close()
			return fmt.Errorf("send: %w", transport.ErrStalled)
		}
	}
	return c.Conn.Send(f)
}

// openVolumeA opens a secondary of the rig's session with one volume, a, of
// 1 MiB, closed when the test ends.
func openVolumeA(t *testing.T) *Secondary {
	t.Helper()
	dir := t.TempDir()
	v, err := volume.Open(filepath.Join(dir, "a.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	sec, err := Open(Config{Session: rigSession, Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"a": v},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"),
		Limits: recordset.DefaultLimits, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sec.Close() })
	return sec
}

// linkVolumeA links primary instance to openVolumeA's secondary over net:
// it returns the connection (closed when the test ends) once welcomed, and
// the welcome's body.
func linkVolumeA(t *testing.T, ctx context.Context, net *transport.MemNetwork, instance uint64) (transport.Conn, []byte) {
	t.Helper()
	conn, err := net.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h := transport.Hello{Session: rigSession, Subsystems: []string{"ss1"}, Instance: instance, Generation: 1,
		Volumes: []transport.VolumeInfo{{Name: "a", Size: 1 << 20}}}
	if err := conn.Send(transport.EncodeHello(h)); err != nil {
		t.Fatal(err)
	}
	typ, body, err := recvFrame(conn, 10*time.Second)
	if err != nil || typ != transport.TypeWelcome {
		t.Fatalf("welcome of primary %d: type %d, %v", instance, typ, err)
	}
	return conn, body
}

// TestStalledPrimaryDoesNotFreezeTheSecondary: a primary that stops
// reading (its process stopped, its host swapping, a path that carries
// nothing back) leaves the secondary's acknowledgement waiting in Send.
// The secondary sends it holding its main lock, so everything else that
// takes the lock waits with it: status (duplex status, the control
// address's /status, which recover reads within 2 s to tell a running
// secondary from a stopped one), Fence (duplex recover), a new primary's
// Welcome, the handing of journaled groups to the applier. Status must
// still answer promptly; here it waits for the send timeout (30 s).
func TestStalledPrimaryDoesNotFreezeTheSecondary(t *testing.T) {
	sec := openVolumeA(t)
	net := transport.NewMemNetwork(1, transport.Faults{})
	ln := &stallListener{Listener: net}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sec.Run(ctx, ln) }()
	defer func() {
		ln.unstall()
		cancel()
		<-done
	}()

	conn, _ := linkVolumeA(t, ctx, net, 7)
	sendAndWait(t, conn, writeSet(1, 1000, write("a", 0)))

	// The primary stops reading; a record set arrives and is journaled,
	// and its acknowledgement waits.
	ln.stall()
	sendRecordSet(t, conn, writeSet(2, 5000, write("a", 4096)))
	waitFor(t, "group 2 journaled", func() bool {
		// The journal's last index, read without the secondary's lock.
		return sec.journal.LastIndex() >= 2
	})

	answered := make(chan Stats, 1)
	go func() { answered <- sec.Stats() }()
	select {
	case <-answered:
	case <-time.After(3 * time.Second):
		t.Fatalf("status of the secondary does not answer within 3s while the primary has stopped reading its acknowledgements: " +
			"the acknowledgement of group 2 is sent holding the secondary's main lock and waits for the send timeout (30s); " +
			"status, recover's fence and a new primary's Welcome all wait with it")
	}
}
