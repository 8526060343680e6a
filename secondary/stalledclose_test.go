package secondary

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/transport"
)

// closeBarrier hands out connections whose first Close waits, as closing a
// TLS connection waits to send close_notify to a peer that stopped reading
// (up to 5 s), until every connection handed out is being closed, or for at
// most wait: closed one after the other, they would each take it.
type closeBarrier struct {
	transport.Listener
	want     int
	wait     time.Duration
	accepts  atomic.Int32
	mu       sync.Mutex
	closing  int
	all      chan struct{}
	timedOut atomic.Int32
}

func (b *closeBarrier) Accept(ctx context.Context) (transport.Conn, error) {
	b.accepts.Add(1)
	c, err := b.Listener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return &barrierConn{Conn: c, b: b}, nil
}

type barrierConn struct {
	transport.Conn
	b    *closeBarrier
	once sync.Once
}

func (c *barrierConn) Close() error {
	c.once.Do(func() {
		c.b.mu.Lock()
		c.b.closing++
		if c.b.closing == c.b.want {
			close(c.b.all)
		}
		c.b.mu.Unlock()
		select {
		case <-c.b.all:
		case <-time.After(c.b.wait):
			c.b.timedOut.Add(1)
		}
	})
	return c.Conn.Close()
}

// TestShutdownClosesStalledConnectionsTogether: a secondary stopping with
// several connections whose close waits (TLS close_notify to primaries that
// stopped reading) closes them all at once, so that the shutdown waits for
// one such close, not for one after the other.
func TestShutdownClosesStalledConnectionsTogether(t *testing.T) {
	const conns = 4
	r := newRig(t, map[string]int64{"a": 1 << 20})
	r.stop()
	r.openVolumes()
	sec, err := Open(r.config())
	if err != nil {
		t.Fatal(err)
	}
	r.sec = sec
	net := transport.NewMemNetwork(1, transport.Faults{})
	ln := &closeBarrier{Listener: net, want: conns, wait: 5 * time.Second, all: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sec.Run(ctx, ln) }()
	stopped := false
	defer func() {
		cancel()
		if !stopped {
			<-done
		}
		net.Close()
		sec.Close()
		for _, v := range r.vols {
			v.Close()
		}
		r.sec = nil
	}()

	// Connections that have sent no Hello yet: the secondary serves each
	// until it stops.
	for range conns {
		c, err := net.Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	// Run registers a connection before it accepts the next one.
	waitFor(t, "the connections to be accepted", func() bool { return ln.accepts.Load() > conns })
	cancel()
	select {
	case <-done:
		stopped = true
	case <-time.After(time.Minute):
		t.Fatal("the secondary did not stop")
	}
	if n := ln.timedOut.Load(); n > 0 {
		t.Errorf("%d of %d stalled closes waited for the others to begin, which never did: the shutdown closes them one after the other", n, conns)
	}
}
