package transport

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"duplex/crc32c"
)

// Faults are the misbehaviours of an in-memory link, as probabilities per frame
// sent (0 to 1). They apply in both directions.
type Faults struct {
	Drop       float64
	Duplicate  float64
	Reorder    float64 // deliver this frame before the one queued ahead of it
	Corrupt    float64 // flip one byte
	Disconnect float64 // close the connection instead of sending
	MaxDelay   time.Duration
}

// MemNetwork is an in-memory link: a Dialer for the primary and a Listener for
// the secondary, with settable faults.
type MemNetwork struct {
	mu      sync.Mutex
	faults  Faults
	rng     *rand.Rand
	accept  chan *memConn
	closed  chan struct{}
	once    sync.Once
	stats   MemStats
	current []*memConn
	down    bool
	stalled atomic.Bool
}

// memStallBuffer is what a stalled listener's connection still takes, as
// the sockets' buffers would.
const memStallBuffer = 256 << 10

// SetStalled makes the listener's side stop reading, as a secondary whose
// process is stopped or whose disk hangs does, while its connections stay
// up: it receives nothing (a new connection's Hello included), and a Send
// towards it waits once memStallBuffer bytes are queued, until the stall
// ends or its send timeout passes (then it fails with ErrStalled and the
// connection is cut).
func (n *MemNetwork) SetStalled(stalled bool) {
	n.stalled.Store(stalled)
	if stalled {
		return
	}
	n.mu.Lock()
	conns := append([]*memConn(nil), n.current...)
	n.mu.Unlock()
	for _, c := range conns {
		c.out.wake()
	}
}

// SetDown takes the link down (every connection is cut and dials fail) or
// brings it back up.
func (n *MemNetwork) SetDown(down bool) {
	n.mu.Lock()
	n.down = down
	n.mu.Unlock()
	if down {
		n.Cut()
	}
}

// MemStats counts the faults injected.
type MemStats struct {
	Frames, Dropped, Duplicated, Reordered, Corrupted, Disconnects uint64
}

// NewMemNetwork returns an in-memory link; seed makes its faults repeatable.
func NewMemNetwork(seed uint64, f Faults) *MemNetwork {
	return &MemNetwork{faults: f, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), accept: make(chan *memConn), closed: make(chan struct{})}
}

// SetFaults changes the faults from now on.
func (n *MemNetwork) SetFaults(f Faults) {
	n.mu.Lock()
	n.faults = f
	n.mu.Unlock()
}

// Stats returns the fault counters.
func (n *MemNetwork) Stats() MemStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Cut closes every open connection, as a link failure would.
func (n *MemNetwork) Cut() {
	n.mu.Lock()
	conns := n.current
	n.current = nil
	n.stats.Disconnects++
	n.mu.Unlock()
	for _, c := range conns {
		c.abort()
	}
}

// Dial connects to the listener side.
func (n *MemNetwork) Dial(ctx context.Context) (Conn, error) {
	n.mu.Lock()
	down := n.down
	n.mu.Unlock()
	if down {
		return nil, fmt.Errorf("mem dial: link down: %w", ErrClosed)
	}
	a, b := newMemPair(n)
	select {
	case n.accept <- b:
		n.mu.Lock()
		n.current = append(n.current, a)
		n.mu.Unlock()
		return a, nil
	case <-n.closed:
		return nil, fmt.Errorf("mem dial: %w", ErrClosed)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Accept returns the next dialled connection.
func (n *MemNetwork) Accept(ctx context.Context) (Conn, error) {
	select {
	case c := <-n.accept:
		return c, nil
	case <-n.closed:
		return nil, fmt.Errorf("mem accept: %w", ErrClosed)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops the listener; open connections stay until closed.
func (n *MemNetwork) Close() error {
	n.once.Do(func() { close(n.closed) })
	return nil
}

// Addr names the listener.
func (n *MemNetwork) Addr() string { return "mem" }

type queued struct {
	frame []byte
	at    time.Time
}

type memQueue struct {
	mu     sync.Mutex
	items  []queued
	bytes  int // queued
	signal chan struct{}
	space  chan struct{} // bytes left the queue, or it or the stall ended
	closed bool          // the receiver closed, or the link was cut: nothing more is delivered
	ended  bool          // the sender closed: what it sent is still delivered, then the end
	// stalls: the queue towards the listener, which SetStalled stops.
	stalls *atomic.Bool
}

func (q *memQueue) wake() {
	for _, ch := range []chan struct{}{q.signal, q.space} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (q *memQueue) stalled() bool { return q.stalls != nil && q.stalls.Load() }

type memConn struct {
	net     *MemNetwork
	in      *memQueue
	out     *memQueue
	name    string
	timeout atomic.Int64 // send timeout; 0: DefaultSendTimeout
	answer  atomic.Pointer[func() time.Time]
	alloc   func(n int) []byte
	place   func(head []byte, n int) []byte
	sums    *crc32c.Sums // nil: none taken
}

// SetFramePlace implements FramePlacer, as SetFrameAlloc does FrameBuffers.
// Call it before the first Recv.
func (c *memConn) SetFramePlace(place func(head []byte, n int) []byte) { c.place = place }

// SetFrameAlloc implements FrameBuffers: Recv copies each frame into a
// buffer of alloc (the queue's frame may be duplicated by a fault, so it is
// never lent itself), so that a receiver recycling its buffers is tested on
// this link as on TCP. Call it before the first Recv.
func (c *memConn) SetFrameAlloc(alloc func(n int) []byte) { c.alloc = alloc }

// SetFrameSums implements FrameSums: Recv copies each frame in pieces,
// checksummed as TCP's reads are, so that the tests of frames damaged on
// this link check the receiver's decoding from them. Call it from the
// goroutine that calls Recv, between calls.
func (c *memConn) SetFrameSums(s *crc32c.Sums) { c.sums = s }

func newMemPair(n *MemNetwork) (*memConn, *memConn) {
	q1 := &memQueue{signal: make(chan struct{}, 1), space: make(chan struct{}, 1)}
	q2 := &memQueue{signal: make(chan struct{}, 1), space: make(chan struct{}, 1), stalls: &n.stalled}
	return &memConn{net: n, in: q1, out: q2, name: "mem-secondary"},
		&memConn{net: n, in: q2, out: q1, name: "mem-primary"}
}

func (q *memQueue) shut(graceful bool) {
	q.mu.Lock()
	if graceful {
		q.ended = true
	} else {
		q.closed = true
	}
	q.mu.Unlock()
	q.wake()
}

func (c *memConn) Peer() string { return c.name }

// Close ends the connection as closing a TCP socket does: the peer still
// receives what was sent before (a refusal's reason, say), then the end.
func (c *memConn) Close() error {
	c.in.shut(false)
	c.out.shut(true)
	return nil
}

// abort ends the connection as a link failure does: frames in flight are lost.
func (c *memConn) abort() {
	c.in.shut(false)
	c.out.shut(false)
}

// SetSendTimeout bounds a Send's wait on a stalled peer (SetStalled); the
// link queues without bound otherwise.
func (c *memConn) SetSendTimeout(d time.Duration) { c.timeout.Store(int64(max(d, 0))) }

// SetAnswered implements Conn: a Send waiting on a stalled peer that
// answers within the send timeout goes on waiting.
func (c *memConn) SetAnswered(answered func() time.Time) { storeAnswered(&c.answer, answered) }

// awaitRoom waits, while the peer is stalled, for the queue towards it to
// take more, as a socket's full buffer makes a send wait.
func (c *memConn) awaitRoom() error {
	q := c.out
	limit := time.Duration(c.timeout.Load())
	if limit == 0 {
		limit = DefaultSendTimeout
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	took := time.Now() // when the peer last took anything
	for {
		q.mu.Lock()
		full := q.stalled() && q.bytes >= memStallBuffer && !q.closed && !q.ended
		q.mu.Unlock()
		if !full {
			return nil
		}
		select {
		case <-q.space:
			took = time.Now()
		case <-t.C:
			if answeredWithin(&c.answer, limit) {
				t.Reset(limit)
				continue
			}
			c.abort()
			return fmt.Errorf("mem send to %s: %w: it took nothing for %s (send timeout %s); connection cut",
				c.name, ErrStalled, time.Since(took).Round(time.Millisecond), limit)
		}
	}
}

func (c *memConn) Send(frame []byte) error {
	n := c.net
	n.mu.Lock()
	f := n.faults
	roll := func(p float64) bool { return p > 0 && n.rng.Float64() < p }
	n.stats.Frames++
	disconnect, drop, dup, reorder, corrupt := roll(f.Disconnect), roll(f.Drop), roll(f.Duplicate), roll(f.Reorder), roll(f.Corrupt)
	var delay time.Duration
	if f.MaxDelay > 0 {
		delay = time.Duration(n.rng.Int64N(int64(f.MaxDelay)))
	}
	corruptAt := 0
	if len(frame) > 0 {
		corruptAt = n.rng.IntN(len(frame))
	}
	corruptBit := byte(1) << n.rng.IntN(8)
	switch {
	case disconnect:
		n.stats.Disconnects++
	case drop:
		n.stats.Dropped++
	}
	if dup {
		n.stats.Duplicated++
	}
	if reorder {
		n.stats.Reordered++
	}
	if corrupt {
		n.stats.Corrupted++
	}
	n.mu.Unlock()

	if disconnect {
		c.abort()
		return fmt.Errorf("mem send: injected disconnect: %w", ErrClosed)
	}
	if err := c.awaitRoom(); err != nil {
		return err
	}
	q := c.out
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.ended {
		return fmt.Errorf("mem send: %w", ErrClosed)
	}
	if drop {
		return nil // the sender cannot tell, as with a lost packet on a broken path
	}
	cp := append([]byte(nil), frame...)
	if corrupt && len(cp) > 0 {
		cp[corruptAt] ^= corruptBit
	}
	item := queued{frame: cp, at: time.Now().Add(delay)}
	q.bytes += len(cp)
	if dup {
		q.bytes += len(cp)
	}
	if reorder && len(q.items) > 0 {
		last := len(q.items) - 1
		q.items = append(q.items, q.items[last])
		q.items[last] = item
	} else {
		q.items = append(q.items, item)
	}
	if dup {
		q.items = append(q.items, queued{frame: append([]byte(nil), cp...), at: item.at})
	}
	select {
	case q.signal <- struct{}{}:
	default:
	}
	return nil
}

// received is frame as Recv returns it: in a buffer of alloc, and with its
// pieces' checksums taken as copied, if asked.
func (c *memConn) received(frame []byte) []byte {
	if c.alloc == nil && c.place == nil && c.sums == nil {
		return frame
	}
	var f []byte
	if c.place != nil && len(frame) >= PlaceMin {
		f = c.place(frame[:PlaceHead:PlaceHead], len(frame))[:len(frame)]
	} else if c.alloc != nil {
		f = c.alloc(len(frame))[:len(frame)]
	} else {
		f = make([]byte, len(frame))
	}
	if c.sums == nil {
		copy(f, frame)
		return f
	}
	done := 0
	// Copying cannot fail.
	_ = c.sums.Fill(f, func(p []byte) error {
		done += copy(p, frame[done:])
		return nil
	})
	return f
}

func (c *memConn) Recv() ([]byte, error) {
	q := c.in
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, fmt.Errorf("mem recv: %w", ErrClosed)
		}
		var wait time.Duration = -1
		if len(q.items) > 0 && q.stalled() {
			// Not reading: wait for the stall to end.
		} else if len(q.items) > 0 {
			head := q.items[0]
			if d := time.Until(head.at); d > 0 {
				wait = d
			} else {
				q.items = q.items[1:]
				q.bytes -= len(head.frame)
				q.mu.Unlock()
				select {
				case q.space <- struct{}{}:
				default:
				}
				return c.received(head.frame), nil
			}
		} else if q.ended {
			q.mu.Unlock()
			// The sender closed, between frames: the end of the stream,
			// as TCP reads it.
			return nil, fmt.Errorf("mem recv: %w (%w)", ErrClosed, io.EOF)
		}
		q.mu.Unlock()
		if wait >= 0 {
			t := time.NewTimer(wait)
			select {
			case <-q.signal:
			case <-t.C:
			}
			t.Stop()
		} else {
			<-q.signal
		}
	}
}
