package secondary

import (
	"log/slog"
	"sync"

	"duplex/transport"
)

// outbox sends what the secondary tells one primary connection (its
// Welcome, the acknowledgements, a refusal) from a goroutine of its own.
// Those are decided under s.mu, in the order the secondary decides them,
// but a primary that stops reading holds a send for the send timeout: sent
// under s.mu, it would hold status, Fence (recover), a new primary's
// Welcome and the handing of journaled groups to the applier with it. The
// outbox keeps the order (the Welcome first; an acknowledgement only once
// its group is journaled, since it is queued only then) and is bounded:
// acknowledgements are cumulative and each carries the secondary's whole
// position as of when it was queued, so one not yet sent is replaced by the
// next. A send that fails (the send timeout gives a stalled primary up)
// closes the connection, so the primary's serve ends and a new primary
// connection can take over.
type outbox struct {
	conn transport.Conn
	log  *slog.Logger

	mu    sync.Mutex
	cond  *sync.Cond
	queue [][]byte // frames not yet sent, in order
	// ending: nothing more is queued; the connection is closed once the
	// queue is sent.
	ending bool
	err    error         // why a send failed, which gave the connection up
	done   chan struct{} // closed when the goroutine has returned
}

func newOutbox(conn transport.Conn, log *slog.Logger) *outbox {
	o := &outbox{conn: conn, log: log, done: make(chan struct{})}
	o.cond = sync.NewCond(&o.mu)
	go o.run()
	return o
}

// put queues frame f. An acknowledgement replaces one still queued behind
// the others: it says all the earlier one did, as of later.
func (o *outbox) put(f []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ending {
		return
	}
	if n := len(o.queue); n > 0 && isAck(f) && isAck(o.queue[n-1]) {
		o.queue[n-1] = f
	} else {
		o.queue = append(o.queue, f)
	}
	o.cond.Signal()
}

func isAck(f []byte) bool {
	return len(f) > 0 && (f[0] == transport.TypeAck || f[0] == transport.TypeIndexedAck)
}

// end queues f, if not nil, as the last frame: the connection is closed once
// it is sent. Frames put after end are dropped.
func (o *outbox) end(f []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ending {
		return
	}
	if f != nil {
		o.queue = append(o.queue, f)
	}
	o.ending = true
	o.cond.Signal()
}

// wait returns once the goroutine has returned: everything queued was sent
// or the connection failed.
func (o *outbox) wait() { <-o.done }

// failed returns why a send failed, which gave the connection up, or nil:
// nil too for a send that failed once the link was ended.
func (o *outbox) failed() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

func (o *outbox) run() {
	defer close(o.done)
	for {
		o.mu.Lock()
		for len(o.queue) == 0 && !o.ending {
			o.cond.Wait()
		}
		if len(o.queue) == 0 {
			o.mu.Unlock()
			o.conn.Close()
			return
		}
		f := o.queue[0]
		o.queue[0] = nil
		o.queue = o.queue[1:]
		o.mu.Unlock()
		if err := o.conn.Send(f); err != nil {
			// The link's end is logged with this error (failed), at
			// the level its cause calls for: said here too, one
			// failure would be two warnings.
			o.log.Debug("cannot send to the primary: giving the connection up", "peer", o.conn.Peer(), "err", err)
			o.mu.Lock()
			if !o.ending {
				// Once the secondary ended the link (a newer link, a
				// refusal, serve's end), it closes the connection
				// itself, and a send under way fails for that alone:
				// no failure of the link's.
				o.err = err
			}
			o.queue, o.ending = nil, true
			o.mu.Unlock()
			o.conn.Close()
			return
		}
	}
}
