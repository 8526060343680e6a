package nbd

import (
	"sync"
	"sync/atomic"
	"time"
)

// A request served on the read loop (serveInline) holds up the reading of
// the next for as long as the Export takes: a few microseconds as a rule,
// but a write may wait for room in the sidefile, be paced, or meet a disk
// that stalls, and the client's other requests, which could be served
// meanwhile, would wait behind it. So a watchdog looks at every connection
// once per rescueAfter, and when a connection's read loop has been serving
// the same request for two of its looks in a row, it starts another
// goroutine that reads on; the one serving finishes its request and ends.
// A request held up costs the ones behind it between one and two
// rescueAfter, against nothing in the common case: no timer armed and no
// goroutine woken per request.
//
// The watchdog runs while connections serve requests inline, and stops
// after watchdogIdle of its looks in which none did, so that an idle
// process does not wake for it.
const (
	rescueAfter  = time.Millisecond
	watchdogIdle = 100
)

// loopEnd is how and why the read loop ended, when it ended in another
// goroutine than the connection's own (transmit's).
type loopEnd struct {
	reason string
	hard   bool
}

// serveInline serves r on the read loop and reports whether the read loop
// is still this goroutine's: false means the watchdog handed it to another
// while r was being served.
func (c *conn) serveInline(r *request) bool {
	token := c.served.Add(1)
	c.inline.Store(token)
	watchdog.ensure()
	c.handle(r)
	return c.inline.CompareAndSwap(token, 0)
}

// readOn continues the read loop of a connection whose request held it up.
func (c *conn) readOn() {
	defer c.workers.Done()
	reason, hard, moved := c.readLoop()
	if moved {
		return
	}
	if hard {
		// transmit, which hangs up on a protocol violation, may be
		// held for as long as the Export holds the request it serves:
		// hang up here, so that the client notices at once.
		c.nc.Close()
	}
	c.loopEnd <- loopEnd{reason, hard}
}

var watchdog watchdogs

type watchdogs struct {
	mu      sync.Mutex
	conns   map[*conn]struct{}
	running atomic.Bool
}

func (w *watchdogs) add(c *conn) {
	w.mu.Lock()
	if w.conns == nil {
		w.conns = make(map[*conn]struct{})
	}
	w.conns[c] = struct{}{}
	w.mu.Unlock()
}

func (w *watchdogs) remove(c *conn) {
	w.mu.Lock()
	delete(w.conns, c)
	w.mu.Unlock()
}

// ensure starts the watchdog unless it runs. A connection calls it after
// publishing its inline token, and the watchdog reads the tokens after
// saying it stopped: one of the two sees the other.
func (w *watchdogs) ensure() {
	if !w.running.Load() && w.running.CompareAndSwap(false, true) {
		go w.run()
	}
}

func (w *watchdogs) run() {
	t := time.NewTicker(rescueAfter)
	defer t.Stop()
	idle := 0
	for range t.C {
		if w.look() {
			idle = 0
			continue
		}
		if idle++; idle < watchdogIdle {
			continue
		}
		w.running.Store(false)
		if !w.serving() || !w.running.CompareAndSwap(false, true) {
			return
		}
		idle = 0
	}
}

// look hands on the read loops held up since the last look, and reports
// whether any connection served a request inline since then.
func (w *watchdogs) look() (active bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for c := range w.conns {
		tok, n := c.inline.Load(), c.served.Load()
		if n != c.seenServed || tok != 0 {
			active = true
		}
		if tok != 0 && tok == c.seenInline && c.inline.CompareAndSwap(tok, 0) {
			c.workers.Add(1)
			go c.readOn()
			tok = 0
		}
		c.seenInline, c.seenServed = tok, n
	}
	return active
}

// serving reports whether a connection is serving a request inline now.
func (w *watchdogs) serving() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for c := range w.conns {
		if c.inline.Load() != 0 {
			return true
		}
	}
	return false
}
