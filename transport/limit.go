package transport

import (
	"context"
	"fmt"
	"sync/atomic"

	"duplex/ratelimit"
)

// LimitedDialer paces every frame its connections send by Limit: the link
// rate limit. The wait comes before a frame's first byte, so the send
// timeout, which judges a peer by what it takes, never counts it.
type LimitedDialer struct {
	Dialer
	Limit *ratelimit.Limiter
}

// Dial opens a paced connection.
func (d *LimitedDialer) Dial(ctx context.Context) (Conn, error) {
	c, err := d.Dialer.Dial(ctx)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	return &limitedConn{Conn: c, lim: d.Limit, ctx: lctx, cancel: cancel}, nil
}

type limitedConn struct {
	Conn
	lim    *ratelimit.Limiter
	ctx    context.Context // ends at Close: a Send waiting for its rate gives up
	cancel context.CancelFunc
	began  atomic.Pointer[func()] // SetSendBegins
}

// SendBegins is implemented by a Conn whose Send may wait before its
// first byte goes out (the link rate limit): began is called as each
// Send's bytes begin to go, that wait over. A caller judging how long the
// peer holds a send (HeldSend) counts from then: the wait at the limit,
// minutes for a large frame at a low rate, is not the peer's.
type SendBegins interface {
	SetSendBegins(began func())
}

// SetSendBegins implements SendBegins.
func (c *limitedConn) SetSendBegins(began func()) { c.began.Store(&began) }

// sendBegins says a Send's wait for its rate is over.
func (c *limitedConn) sendBegins() {
	if f := c.began.Load(); f != nil {
		(*f)()
	}
}

func (c *limitedConn) Send(frame []byte) error {
	if err := c.lim.Wait(c.ctx, int64(len(frame))); err != nil {
		return fmt.Errorf("send %d bytes to %s: %w", len(frame), c.Peer(), ErrClosed)
	}
	c.sendBegins()
	return c.Conn.Send(frame)
}

func (c *limitedConn) Close() error {
	c.cancel()
	return c.Conn.Close()
}
