package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"duplex/crc32c"
)

// DefaultMaxFrame bounds a TCP frame, so a corrupt length never makes the
// receiver allocate without limit.
const DefaultMaxFrame = 256 << 20

// TCPDialer dials the secondary over TCP, with TLS when TLS is set.
type TCPDialer struct {
	Addr     string
	TLS      *tls.Config
	MaxFrame int
	// MaxRecv bounds frames received by the dialing side, which only gets
	// small control messages: a corrupted length then fails at once instead
	// of waiting for megabytes that never come. Default 1 MiB.
	MaxRecv int
	Timeout time.Duration // connect and handshake; default 10s
}

// Dial connects once; the mover retries with backoff.
func (d *TCPDialer) Dial(ctx context.Context) (Conn, error) {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	nd := net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}
	c, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", d.Addr, err)
	}
	var under *alertBounded
	if d.TLS != nil {
		under = &alertBounded{Conn: c}
		tc := tls.Client(under, d.TLS)
		hctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("dial %s: TLS handshake: %w", d.Addr, err)
		}
		c = tc
	}
	tc := newTCPConn(c, d.MaxFrame)
	tc.under = under
	tc.maxRecv = d.MaxRecv
	if tc.maxRecv <= 0 {
		tc.maxRecv = 1 << 20
	}
	return tc, nil
}

// TCPListener accepts primaries over TCP, with TLS when TLS is set.
type TCPListener struct {
	ln       net.Listener
	tls      *tls.Config
	maxFrame int
}

// ListenTCP listens on addr.
func ListenTCP(addr string, tlsConf *tls.Config, maxFrame int) (*TCPListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return &TCPListener{ln: ln, tls: tlsConf, maxFrame: maxFrame}, nil
}

// Accept waits for the next connection. With TLS, the caller completes the
// handshake with Handshake before using it.
func (l *TCPListener) Accept(ctx context.Context) (Conn, error) {
	stop := context.AfterFunc(ctx, func() { l.ln.Close() })
	defer stop()
	c, err := l.ln.Accept()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("accept %s: %w", l.ln.Addr(), err)
	}
	if l.tls != nil {
		// The handshake happens in Handshake, on the connection's own
		// goroutine: a peer that connects and says nothing must not hold up
		// the next one.
		under := &alertBounded{Conn: c}
		tc := newTCPConn(tls.Server(under, l.tls), l.maxFrame)
		tc.under = under
		return tc, nil
	}
	return newTCPConn(c, l.maxFrame), nil
}

// Handshake completes a connection's TLS handshake, if it has one, within
// 10 seconds. Its error is a *HandshakeError.
func Handshake(ctx context.Context, c Conn) error {
	tc, ok := c.(*tcpConn)
	if !ok {
		return nil
	}
	t, ok := tc.c.(*tls.Conn)
	if !ok {
		return nil
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := t.HandshakeContext(hctx); err != nil {
		t.Close()
		return &HandshakeError{Peer: t.RemoteAddr().String(), Err: err}
	}
	return nil
}

// HandshakeError is a TLS handshake that failed with one peer.
type HandshakeError struct {
	Peer string
	Err  error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("TLS handshake with %s: %v", e.Peer, e.Err)
}
func (e *HandshakeError) Unwrap() error { return e.Err }

// Close stops listening.
func (l *TCPListener) Close() error { return l.ln.Close() }

// Addr is the listening address.
func (l *TCPListener) Addr() string { return l.ln.Addr().String() }

type tcpConn struct {
	c        net.Conn
	under    *alertBounded // the socket under TLS; nil without
	maxFrame int
	maxRecv  int // 0: maxFrame
	wmu      sync.Mutex
	stall    atomic.Int64 // send timeout; 0: DefaultSendTimeout
	answered atomic.Pointer[func() time.Time]
	hdr      [4]byte
	rhdr     [4]byte
	alloc    func(n int) []byte // nil: make
	place    func(head []byte, n int) []byte
	head     []byte       // a placed frame's first bytes, read before it
	sums     *crc32c.Sums // nil: none taken
}

// SetFramePlace implements FramePlacer. Call it before the first Recv.
func (t *tcpConn) SetFramePlace(place func(head []byte, n int) []byte) { t.place = place }

// SetFrameAlloc implements FrameBuffers. Call it before the first Recv.
func (t *tcpConn) SetFrameAlloc(alloc func(n int) []byte) { t.alloc = alloc }

// SetFrameSums implements FrameSums. Call it from the goroutine that calls
// Recv, between calls.
func (t *tcpConn) SetFrameSums(s *crc32c.Sums) { t.sums = s }

func newTCPConn(c net.Conn, maxFrame int) *tcpConn {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &tcpConn{c: c, maxFrame: maxFrame}
}

func (t *tcpConn) Peer() string { return t.c.RemoteAddr().String() }

// Close closes the connection. Over TLS, a close alert goes first if the
// socket has room for it at once: see alertBounded.
func (t *tcpConn) Close() error {
	if t.under != nil {
		t.under.closing.Store(true)
	}
	return t.c.Close()
}

// closeAlertWait bounds the write of TLS's close alert. A connection is
// closed as its link is given up, most often for a peer that reads
// nothing, whose window is shut: TLS would wait up to 5 s for room for the
// alert, 5 s more in which the link counts as up and the next one waits.
// An alert that finds room in the socket's buffer goes at once, and the
// peer then reads the end of the stream as a close, not a cut.
const closeAlertWait = 50 * time.Millisecond

// alertBounded is the socket under a TLS connection: once the connection
// closes, it caps the write deadline TLS sets for its close alert to
// closeAlertWait. (TLS closes the socket at once, alert unsent, only if a
// write is under way.)
type alertBounded struct {
	net.Conn
	closing atomic.Bool
}

func (a *alertBounded) SetWriteDeadline(t time.Time) error {
	if a.closing.Load() {
		if limit := time.Now().Add(closeAlertWait); t.IsZero() || t.After(limit) {
			t = limit
		}
	}
	return a.Conn.SetWriteDeadline(t)
}

func (a *alertBounded) SetDeadline(t time.Time) error {
	if err := a.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return a.SetWriteDeadline(t)
}

// NetConn is the socket, as tls.Conn names it.
func (a *alertBounded) NetConn() net.Conn { return a.Conn }

func (t *tcpConn) SetSendTimeout(d time.Duration) { t.stall.Store(int64(max(d, 0))) }

// SetAnswered implements Conn.
func (t *tcpConn) SetAnswered(answered func() time.Time) { storeAnswered(&t.answered, answered) }

func storeAnswered(p *atomic.Pointer[func() time.Time], answered func() time.Time) {
	if answered == nil {
		p.Store(nil)
		return
	}
	p.Store(&answered)
}

// answeredWithin says the peer answered (SetAnswered) within d of now.
func answeredWithin(p *atomic.Pointer[func() time.Time], d time.Duration) bool {
	f := p.Load()
	return f != nil && time.Since((*f)()) < d
}

// sendPiece is what a peer must take within the send timeout for a Send
// over TLS to go on: a slow link that keeps taking data is not a stalled
// peer, however long the frame. TLS needs pieces because a write that times
// out breaks its connection for good; plain TCP moves the deadline on
// whenever the peer took anything, in one vectored write.
const sendPiece = 64 << 10

func (t *tcpConn) Send(frame []byte) error { return t.send([][]byte{frame}) }

// send sends the frame that is the concatenation of bufs.
func (t *tcpConn) send(bufs [][]byte) error {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if total > t.maxFrame {
		return fmt.Errorf("send %d bytes to %s: %w", total, t.Peer(), ErrFrameTooLarge)
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	limit := time.Duration(t.stall.Load())
	if limit == 0 {
		limit = DefaultSendTimeout
	}
	binary.BigEndian.PutUint32(t.hdr[:], uint32(total))
	var err error
	// took is when the peer last took anything: a send waited on while
	// it answers ends after far more than the send timeout. It is known
	// only as often as a write returns: plain TCP's last write that took
	// something returned at its deadline, the peer's last byte taken
	// before that (its silence was longer than said), and TLS's pieces
	// are taken whole or not (the peer took part of one since).
	took := time.Now()
	quietFor := "nothing for at least"
	_, isTLS := t.c.(*tls.Conn)
	if isTLS {
		quietFor = fmt.Sprintf("less than %d KiB in", sendPiece>>10)
		frame := bufs[0]
		if len(bufs) > 1 {
			// TLS copies what it encrypts anyway.
			frame = make([]byte, 0, total)
			for _, b := range bufs {
				frame = append(frame, b...)
			}
		}
		err = t.sendPieces(frame, limit, &took)
	} else {
		out := make(net.Buffers, 0, len(bufs)+1)
		out = append(append(out, t.hdr[:]), bufs...)
		for {
			if err = t.c.SetWriteDeadline(time.Now().Add(limit)); err != nil {
				break
			}
			var n int64
			// WriteTo consumes what it wrote, so a retry sends the rest.
			n, err = out.WriteTo(t.c)
			if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if n > 0 {
				took = time.Now()
			} else if !answeredWithin(&t.answered, limit) {
				break
			}
		}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && t.under != nil && t.under.closing.Load() {
		// Close capped the deadline for its alert before TLS closed: the
		// link was closed under the send, its peer no slower than before.
		return fmt.Errorf("send %d bytes to %s: %w (closed while sending)", total, t.Peer(), net.ErrClosed)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		quiet := time.Since(took).Round(time.Millisecond)
		t.Close()
		return fmt.Errorf("send %d bytes to %s: %w: it took %s %s (send timeout %s); connection closed",
			total, t.Peer(), ErrStalled, quietFor, quiet, limit)
	}
	if err != nil {
		return fmt.Errorf("send to %s: %w", t.Peer(), err)
	}
	return nil
}

// sendPieces writes the header and frame in pieces of sendPiece, each
// within limit, setting took as each is written.
func (t *tcpConn) sendPieces(frame []byte, limit time.Duration, took *time.Time) error {
	// A write that times out breaks a TLS connection for good, so the
	// deadline cannot be tried again once the peer is seen to answer: it
	// is moved on while the write waits, whenever the peer answers, though
	// SetAnswered be called only once the send began.
	stop := t.extendWhileAnswered(limit)
	defer stop()
	first := min(len(frame), sendPiece)
	err := t.c.SetWriteDeadline(time.Now().Add(limit))
	if err == nil {
		bufs := net.Buffers{t.hdr[:], frame[:first]}
		if _, err = bufs.WriteTo(t.c); err == nil {
			*took = time.Now()
		}
	}
	for rest := frame[first:]; err == nil && len(rest) > 0; {
		n := min(len(rest), sendPiece)
		if err = t.c.SetWriteDeadline(time.Now().Add(limit)); err == nil {
			if _, err = t.c.Write(rest[:n]); err == nil {
				*took = time.Now()
			}
		}
		rest = rest[n:]
	}
	return err
}

// extendWhileAnswered moves the write deadline limit on from now every
// quarter of limit at which the peer answered within limit, until stop is
// called. Called with wmu held.
func (t *tcpConn) extendWhileAnswered(limit time.Duration) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		tm      *time.Timer
	)
	mu.Lock()
	defer mu.Unlock()
	tm = time.AfterFunc(limit/4, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		// Looked at again while the peer says nothing: it may answer
		// (or SetAnswered be called) before the deadline passes.
		if answeredWithin(&t.answered, limit) {
			t.c.SetWriteDeadline(time.Now().Add(limit))
		}
		tm.Reset(limit / 4)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		tm.Stop()
	}
}

func (t *tcpConn) Recv() ([]byte, error) {
	if _, err := io.ReadFull(t.c, t.rhdr[:]); err != nil {
		return nil, fmt.Errorf("recv from %s: %w", t.Peer(), err)
	}
	n := binary.BigEndian.Uint32(t.rhdr[:])
	limit := t.maxFrame
	if t.maxRecv > 0 {
		limit = t.maxRecv
	}
	if int64(n) > int64(limit) {
		if _, isTLS := t.c.(*tls.Conn); !isTLS && t.rhdr[0] == tlsHandshakeRecord && t.rhdr[1] == 3 {
			// A TLS record's header (type 22, version 3.x) read as a
			// frame's length: the peer speaks TLS to a plain listener.
			return nil, fmt.Errorf("recv from %s: %w", t.Peer(), ErrPeerSpeaksTLS)
		}
		return nil, fmt.Errorf("recv %d bytes from %s: %w", n, t.Peer(), ErrFrameTooLarge)
	}
	var f []byte
	had := 0 // bytes of f read already
	switch {
	case t.place != nil && n >= PlaceMin:
		if t.head == nil {
			t.head = make([]byte, PlaceHead)
		}
		if _, err := io.ReadFull(t.c, t.head); err != nil {
			return nil, fmt.Errorf("recv from %s: %w", t.Peer(), err)
		}
		f = t.place(t.head, int(n))[:n]
		had = copy(f, t.head)
	case t.alloc != nil:
		f = t.alloc(int(n))[:n]
	default:
		f = make([]byte, n)
	}
	read := func(p []byte) error {
		c := min(had, len(p))
		had -= c
		_, err := io.ReadFull(t.c, p[c:])
		return err
	}
	var err error
	if t.sums != nil {
		err = t.sums.Fill(f, read)
	} else {
		err = read(f)
	}
	if err != nil {
		return nil, fmt.Errorf("recv from %s: %w", t.Peer(), err)
	}
	return f, nil
}
