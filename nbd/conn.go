package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Per-connection bounds on concurrency. 64 requests covers qemu (16), the
// kernel (up to 128 tags per queue, but it copes with back-pressure) and
// fio at any sane depth. The byte budget keeps 64 in-flight 32 MiB writes
// from costing 2 GiB per connection: a request that does not fit waits for
// earlier ones to finish, except that a lone request always fits.
const (
	maxInflight      = 64
	minInflightBytes = 64 << 20
)

// request is one decoded transmission request.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	off    uint64
	length uint32
	buf    *[]byte // WRITE payload, from getBuf
	kept   []byte  // WRITE payload, from the Keeper's NewPayload: the export's
	weight int64   // bytes charged to the limiter
}

// A worker is a goroutine that serves the connection's requests one at a
// time, as the read loop hands them over, for as long as the connection
// lasts. A goroutine per request would cost its creation and, on every
// request, the growth of a fresh stack to the depth of the Export's write
// path; a worker keeps its grown stack. It queues its reply and goes on to
// the next request without waiting for the reply to be written: whichever
// worker writes it finishes the request.

// pendingReply is a reply queued for the writer, which owns it from then on:
// it writes it, returns its buffer to the pool, and only then releases the
// request's place in the limiter, which ends it, so that replies a client
// does not read hold requests in flight, and the read loop stops taking
// more.
type pendingReply struct {
	hdr    [replyHeaderLen]byte // a reply without data
	buf    *[]byte              // or a READ's reply, header and data, from getBuf
	weight int64                // the request's charge in the limiter
}

func (p *pendingReply) bytes() []byte {
	if p.buf != nil {
		return *p.buf
	}
	return p.hdr[:]
}

// transmit serves requests until the client disconnects, breaks the
// protocol or the server closes the connection. It returns only when every
// request it dispatched has finished, so no Export call outlives it.
func (c *conn) transmit() string {
	c.lim.init(max(minInflightBytes, 2*int64(c.maxReq)))
	c.queue = make(chan request)
	c.readEnd = make(chan readEnd, 1)
	transmitting.Add(1)
	reason, hard, handed := c.readLoop()
	if handed {
		// The read loop went on in another goroutine (handOver), which
		// ends it.
		e := <-c.readEnd
		reason = e.reason
	} else {
		c.readEnded(hard)
	}
	if c.watch != nil {
		c.watch.Stop()
	}
	c.lim.drain()
	close(c.queue)
	c.workers.Wait()
	return reason
}

// readLoop reads requests and hands each to a worker, so that requests are
// served concurrently. WRITE payloads are read here, in order, because the
// request stream cannot be parsed past a payload that has not been consumed.
// Serving a request on the read loop itself when it is alone in flight would
// hold up the requests a client sends behind it while the Export holds it up
// (a write waiting for room in the sidefile): TestConcurrentRequests catches
// that. The exception is a WRITE with more requests buffered behind it that
// a Prompter promises will not wait: the read loop serves those itself and
// sends their replies in one write once its buffer is drained (serveInline),
// which at queue depth 16 saves a hand-over to a worker (a thread woken, on
// a CPU already busy) a write and wakes the client once a batch. With a
// single processor, a promised WRITE that is large (serveLarge) or alone in
// flight (serveAlone) is served here too. Such a write that does not return
// within inlineBound (a disk that stopped answering) hands the read loop to
// a goroutine of its own (handOver): readLoop then returns handed, having
// served the write as a worker would, and the goroutine that took over
// returns the connection's end through readEnd.
func (c *conn) readLoop() (reason string, hard bool, handed bool) {
	var hdr [requestHeaderLen]byte
	for {
		if c.afterLarge && c.rr != nil && c.br.Buffered() == 0 {
			// After a large WRITE, the next request is likely another:
			// read its header alone, as nbdkit does, so that its payload
			// goes from the socket straight into the request's buffer
			// rather than its first 64 KiB into the reader's buffer and
			// then copied (2 % of the server's CPU per 1 MiB write, and
			// 64 KiB of the cache).
			c.rr.limit = requestHeaderLen
		}
		c.afterLarge = false
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			c.sendInline()
			if errors.Is(err, io.EOF) {
				return "client closed connection", false, false
			}
			return err.Error(), false, false
		}
		if m := binary.BigEndian.Uint32(hdr[0:]); m != requestMagic {
			c.sendInline()
			c.log.Warn("nbd: protocol error: bad request magic, closing", "magic", fmt.Sprintf("%#08x", m))
			return "bad request magic", true, false
		}
		r := request{
			flags:  binary.BigEndian.Uint16(hdr[4:]),
			typ:    binary.BigEndian.Uint16(hdr[6:]),
			cookie: binary.BigEndian.Uint64(hdr[8:]),
			off:    binary.BigEndian.Uint64(hdr[16:]),
			length: binary.BigEndian.Uint32(hdr[24:]),
		}
		switch r.typ {
		case CmdDisc:
			c.sendInline()
			// The client sends nothing after DISC; anything it
			// does send is ignored. transmit waits for in-flight
			// requests before the connection is closed.
			return "NBD_CMD_DISC", false, false

		case CmdWrite:
			if r.length > c.accepted() {
				// The payload follows the header, so refusing the
				// write means consuming it; reading up to 4 GiB only
				// to discard it is exactly the denial of service the
				// limit exists to stop, and without reading it we
				// cannot find the next header: close.
				c.sendInline()
				c.log.Warn("nbd: protocol error: WRITE payload over limit, closing",
					"length", r.length, "max", c.accepted())
				return "oversized WRITE", true, false
			}
			r.weight = int64(r.length)
			if !c.lim.tryAcquire(r.weight) {
				// The batch's places may be the ones it waits for.
				c.sendInline()
				c.lim.acquire(r.weight)
			}
			var p []byte
			if c.keeper != nil {
				// Read straight into the buffer the export keeps: one
				// copy of the payload fewer.
				r.kept = c.keeper.NewPayload(int(r.length))
				p = r.kept
			} else {
				r.buf = getBuf(int(r.length))
				p = *r.buf
			}
			if _, err := io.ReadFull(c.br, p); err != nil {
				putBuf(r.buf)
				c.lim.release(1, r.weight)
				c.sendInline()
				return "reading WRITE payload: " + err.Error(), false, false
			}
			if s := c.serveInline(&r); s != notServed {
				if s == handedOver {
					return "", false, true
				}
				if c.br.Buffered() == 0 {
					c.sendInline()
				}
				continue
			}
			if s := c.serveLarge(&r); s != notServed {
				if s == handedOver {
					return "", false, true
				}
				c.sendInline()
				c.afterLarge = true
				continue
			}
			if s := c.serveAlone(&r); s != notServed {
				if s == handedOver {
					return "", false, true
				}
				c.sendInline()
				if c.rr != nil && c.br.Buffered() == 0 && c.lim.active.Load() == 0 && transmitting.Load() == 1 {
					c.pollNext()
				}
				continue
			}
			c.sendInline()
			c.dispatch(r)
			c.afterLarge = len(p) >= c.br.Size()
			c.awaitNext()
			continue

		case CmdRead:
			if r.length <= c.accepted() {
				r.weight = int64(r.length)
			}
		}
		c.sendInline()
		c.lim.acquire(r.weight)
		c.dispatch(r)
	}
}

// serveInline serves the WRITE r, whose payload is read, on the read loop
// when more requests are buffered behind it (or it ends a batch already
// begun) and the Export promises it will not wait; its reply joins the
// batch. It says whether it did (serveNow).
func (c *conn) serveInline(r *request) served {
	if c.prompt == nil || r.flags != 0 || int(r.length) >= c.br.Size() {
		return notServed
	}
	if len(c.inline) == 0 && c.br.Buffered() < requestHeaderLen {
		return notServed
	}
	return c.serveNow(r)
}

// serveLarge serves the large WRITE r, whose payload is read, on the read
// loop when the process has a single processor and the Export promises the
// write will not wait; its reply joins the batch, which the caller sends at
// once. It says whether it did (serveNow). With one processor the read loop and a
// worker cannot run at the same time anyway, and handing a large write to a
// worker only has them take turns on the processor: the read loop reads the
// next payloads while the worker's pwrite is in the kernel, the runtime's
// monitor takes the processor from the pwrite to run them, and each large
// write costs thread wake-ups and parks that a write served where it was
// read does not (bench/RESULTS.md). The processors are counted at each
// large write, not once a connection: the runtime changes their number
// while it runs (a daemon pinned to one CPU or let go of it), and a client
// stays connected as long as its disk is attached; with a second processor
// a large write served here would hold up the reading of the requests
// behind it for its whole pwrite.
func (c *conn) serveLarge(r *request) served {
	if c.prompt == nil || r.flags != 0 || int(r.length) < c.br.Size() || processors() != 1 {
		return notServed
	}
	return c.serveNow(r)
}

// serveAlone serves the small WRITE r, whose payload is read, on the read
// loop when the process has a single processor, r is the only request in
// flight and nothing is buffered behind it (a client at queue depth 1), and
// the Export promises it will not wait; its reply joins the batch, which the
// caller sends at once. It says whether it did (serveNow). Handed to a worker, the
// write would only take turns with the read loop on the one processor: the
// request copied into the worker through the queue, the worker made ready,
// the read loop's yield to it (awaitNext), the worker's park once replied
// and the scheduler's search for the read loop again, all of it on the CPU
// the client shares at queue depth 1 (bench/RESULTS.md). Served here, a
// request the client sends behind it before the reply waits for its pwrite,
// as behind a large write (serveLarge): with one processor the worker's
// pwrite would have held the processor from the read loop as long, unless
// the disk stalls it past the runtime's monitor, which then runs the read
// loop beside it: a pwrite that hangs here hands the read loop over
// (handOver) after inlineBound instead.
func (c *conn) serveAlone(r *request) served {
	if c.prompt == nil || r.flags != 0 || int(r.length) >= c.br.Size() || len(c.inline) != 0 || c.br.Buffered() != 0 ||
		c.lim.active.Load() != 1 || processors() != 1 {
		return notServed
	}
	return c.serveNow(r)
}

// served is what serveNow did with a WRITE.
type served uint8

const (
	// notServed: the Export did not promise it; the read loop hands it
	// to a worker.
	notServed served = iota
	// servedHere: written, its reply added to the batch.
	servedHere
	// handedOver: it took longer than inlineBound, and another goroutine
	// reads the connection since (handOver); this one served it as a
	// worker would, its reply queued, and must leave the read loop, whose
	// state is no longer its own, at once.
	handedOver
)

// serveNow serves the WRITE r on the read loop if the Export promises it
// will not wait, and adds its reply to the batch; it says whether it did.
func (c *conn) serveNow(r *request) served {
	var errno Errno
	if c.flags&FlagReadOnly != 0 || !c.inRange(r.off, r.length) || r.length == 0 {
		// Refused, or nothing to write: exec answers at once. The
		// Prompter is asked only about a range the export has, as its
		// own state (the activity log's regions) covers no other.
		errno = c.exec(r)
	} else {
		// A promise is about the Export's state, not its disk: a volume
		// write that hangs, or a lock or lease the write meets after
		// the promise, would hold up every request behind it. The
		// watch hands the read loop over if the write lasts.
		tok := c.guard(r.length)
		ok := c.prompt.Prompt(int64(r.off), int(r.length))
		var held bool
		var err error
		if ok {
			p := r.kept
			if p == nil {
				p = *r.buf
			}
			held, err = c.prompt.WriteNow(p[:r.length], int64(r.off))
		}
		if !c.serving.CompareAndSwap(tok, 0) {
			// Taken over: the write is this goroutine's alone now,
			// served and replied as a worker serves a request, its
			// place in the limiter released with its reply. The
			// batch, and the read loop's state, are the new read
			// loop's.
			if !ok || held {
				c.handle(r)
				return handedOver
			}
			if err != nil {
				c.ioError("write", r, err)
				errno = errnoOf(err)
			}
			putBuf(r.buf)
			r.buf, r.kept = nil, nil
			c.reply(r, errno)
			return handedOver
		}
		c.watch.Stop()
		if !ok || held {
			return notServed
		}
		if err != nil {
			c.ioError("write", r, err)
			errno = errnoOf(err)
		}
	}
	putBuf(r.buf)
	r.buf, r.kept = nil, nil
	p := pendingReply{weight: r.weight}
	putReplyHeader(p.hdr[:], r.cookie, errno)
	c.inline = append(c.inline, p)
	return servedHere
}

// inlineBound is how long a write of n bytes served on the read loop may
// take before the read loop is handed over: 10 ms, hundreds of times a
// 4 KiB write's pwrite into the page cache and more than a thread's turn
// on a busy CPU, plus 4 ns a byte (250 MB/s, a slow disk's rate, several
// times a 1 MiB write into the page cache), so that a write merely slow, or
// its thread descheduled, is seldom handed over (its reply then goes out
// apart from its batch's), and one the disk does not answer holds its
// connection up for that long at most (and, at one processor, up to as long
// again for the runtime's monitor to take the processor from the hung
// system call).
func inlineBound(n uint32) time.Duration {
	return 10*time.Millisecond + 4*time.Duration(n)
}

// guard arms the watch over the write of n bytes the read loop is about to
// serve, and returns the write's token, which the read loop clears (with a
// CompareAndSwap, against handOver's) once the write has returned. About 50
// ns a write (a timer's Reset and Stop), against the hand-over to a worker
// that serving the write here saves.
func (c *conn) guard(n uint32) uint64 {
	c.serves++
	tok := c.serves
	c.serving.Store(tok)
	if c.watch == nil {
		// Created for later than the Reset below, so that it cannot
		// fire before c.watch is set: the new read loop uses it.
		c.watch = time.AfterFunc(time.Hour, c.handOver)
	}
	c.watch.Reset(inlineBound(n))
	return tok
}

// handOver is the watch's: the write the read loop serves has not
// returned within inlineBound, so this goroutine becomes the read loop.
// The one serving the write finds its token gone when the write returns,
// and serves it as a worker (serveNow). A late firing for a write already
// returned finds another's token or none: it hands over a write that has
// just begun, or nothing, either of which is harmless. transmit cannot be
// waiting for the workers meanwhile: a read loop is under way.
func (c *conn) handOver() {
	tok := c.serving.Load()
	if tok == 0 || !c.serving.CompareAndSwap(tok, 0) {
		return
	}
	c.workers.Add(1)
	defer c.workers.Done()
	c.log.Debug("nbd: a write served on the read loop has not returned in time; the connection is read on meanwhile")
	// Replies of the batch's writes before it, done: sent now, as the
	// client may wait for them before it sends more.
	c.sendInline()
	reason, hard, handed := c.readLoop()
	if !handed {
		c.readEnded(hard)
		c.readEnd <- readEnd{reason}
	}
}

// readEnd is how the read loop ended, for transmit, when another
// goroutine than transmit's ended it.
type readEnd struct{ reason string }

// readEnded is the end of the read loop, in the goroutine that ran it last,
// not waiting for one that was handed over while its write hangs: a
// DISC read ends the connection's transmission at once, as one a worker
// reads behind a write it holds does.
func (c *conn) readEnded(hard bool) {
	transmitting.Add(-1)
	if hard {
		// After a protocol violation the stream is out of sync and
		// nothing we send can be trusted by the client; hang up now
		// so it notices at once, then let in-flight work drain.
		c.nc.Close()
	}
}

// sendInline sends the replies of the writes served on the read loop, all
// in one write. The read loop must not wait for the client to read them (a
// client may send all its requests before it reads a reply): it writes what
// the socket takes at once, and a goroutine the rest.
func (c *conn) sendInline() {
	if len(c.inline) == 0 {
		return
	}
	c.wmu.Lock()
	c.pending = append(c.pending, c.inline...)
	clear(c.inline)
	c.inline = c.inline[:0]
	if c.writing {
		c.wmu.Unlock()
		return
	}
	c.writing = true
	c.writeLoop(c.tw)
}

// awaitNext is where the read loop goes after handing over a WRITE, before
// it reads the next request. At queue depth 1 the client sends nothing until
// it has the reply, so reading at once finds the socket empty: a read that fails
// with EAGAIN, a park in the runtime's poller, the process idle (two
// epoll_pwait), which also sends the runtime's monitor thread to sleep only
// for the request's pwrite to wake it again (a futex wake and the monitor's
// own sleeps, on the CPU the client shares). nbdkit's thread just blocks in
// recv. So when the request just handed over is the only one in flight and
// nothing more is buffered, the read loop yields to let it run to its reply
// and, if it got there, waits for the client's next request in poll(2) for
// up to pollWait, as a system call the runtime can take the processor back
// from, then reads as usual.
//
// The wait holds the processor from the rest of the process, so it is
// bounded: it is skipped while the request has not replied yet (one that
// blocks in the Export, a write waiting for sidefile room, lets the read loop
// read on at once, as before), it backs off after a wait in which nothing
// came (a client that is far away or thinking: for it the wait is pure loss),
// it is only done while this is the process's only connection in
// transmission, and a request at least every pollerEvery goes through the
// poller, so that goroutines woken by the network (the mover's link) are not
// kept waiting by a client that always answers within pollWait. By time, not
// by count: each pass leaves the process idle once, which sends the monitor
// thread to sleep and has the next system call wake it for a millisecond of
// 20 µs polls (every 16th request: 0.16–0.22 of the monitor's sleeps per
// write; every millisecond: 0.09–0.11).
//
// Reads do not wait: served from the page cache without a system call the
// runtime sees (package volume's preadv2), they do not wake the monitor
// thread, and at queue depth 16 the poller's slower wake-up lets the client
// queue more requests for each (fio randread 4k: 1.45 requests read per
// wake-up through the poller, 1.0 after a wait in poll(2), which cost 30 %
// more CPU per read).
func (c *conn) awaitNext() {
	if c.rr == nil || c.br.Buffered() != 0 || c.lim.active.Load() != 1 || transmitting.Load() != 1 {
		return
	}
	runtime.Gosched()
	if c.lim.active.Load() != 0 {
		return
	}
	c.pollNext()
}

// pollNext is awaitNext's wait for the client's next request, once the only
// request in flight has replied and nothing is buffered, bounded as
// awaitNext says.
func (c *conn) pollNext() {
	switch {
	case c.pollSkip > 0:
		c.pollSkip--
	case time.Since(c.viaPoller) >= pollerEvery:
		c.viaPoller = time.Now()
	case c.rr.waitReadable(pollWait):
		c.pollBackoff = 0
	default:
		c.pollBackoff = min(max(2*c.pollBackoff, 1), maxPollBackoff)
		c.pollSkip = c.pollBackoff
	}
}

// processors is the number of processors the runtime runs goroutines on
// now (a lock taken in the runtime, some tens of nanoseconds: read once a
// large write): a variable for tests.
var processors = func() int { return runtime.GOMAXPROCS(0) }

// transmitting counts the connections in transmission, of every Server in
// the process: awaitNext waits only for the one client there is.
var transmitting atomic.Int32

// The bounds of awaitNext's wait. 100 µs is several times a client's turn
// on a shared CPU at queue depth 1 (fio's nbd engine: about 17 µs a request);
// a millisecond through the poller is a twentieth of a replication interval.
const (
	pollWait       = 100 * time.Microsecond
	pollerEvery    = time.Millisecond
	maxPollBackoff = 1024
)

// dispatch hands r, which holds its place in the limiter, to an idle worker,
// or to a new one when none is idle. Only the read loop calls it.
func (c *conn) dispatch(r request) {
	if c.nworkers < maxInflight {
		select {
		case c.queue <- r:
			return
		default:
		}
		c.nworkers++
		c.workers.Add(1)
		go c.work(r)
		return
	}
	// Every worker there will ever be exists, and the limiter lets at
	// most maxInflight requests in, r among them: one worker is idle or
	// about to be.
	c.queue <- r
}

// work serves r, then every request the read loop hands it, until the
// connection ends.
func (c *conn) work(r request) {
	defer c.workers.Done()
	for ok := true; ok; r, ok = <-c.queue {
		c.handle(&r)
	}
}

// handle serves r and queues its one reply, which ends it.
func (c *conn) handle(r *request) {
	if r.typ == CmdRead {
		c.read(r)
		return
	}
	errno := c.exec(r)
	putBuf(r.buf)
	r.buf, r.kept = nil, nil
	c.reply(r, errno)
}

// accepted is the largest READ or WRITE payload served: the advertised
// maximum, or MaxAccepted if that is larger, for clients that ignore it.
func (c *conn) accepted() uint32 { return max(c.maxReq, MaxAccepted) }

func (c *conn) inRange(off uint64, n uint32) bool {
	return off <= c.size && uint64(n) <= c.size-off
}

// read serves NBD_CMD_READ. With simple replies the data follows the reply
// header, so both go out in a single Write from one pooled buffer.
func (c *conn) read(r *request) {
	switch {
	case r.flags&^CmdFlagFUA != 0:
		// DF needs structured replies; anything else is unknown.
		c.reply(r, EINVAL)
		return
	case r.length > c.accepted():
		c.reply(r, EINVAL)
		return
	case !c.inRange(r.off, r.length):
		c.reply(r, EINVAL)
		return
	}
	b := getBuf(replyHeaderLen + int(r.length))
	if r.length > 0 {
		if err := c.exp.ReadAt((*b)[replyHeaderLen:], int64(r.off)); err != nil {
			putBuf(b)
			c.ioError("read", r, err)
			c.reply(r, errnoOf(err))
			return
		}
	}
	putReplyHeader(*b, r.cookie, 0)
	c.send(pendingReply{buf: b, weight: r.weight})
}

// exec runs every command except READ and returns the reply's error.
func (c *conn) exec(r *request) Errno {
	off, n := int64(r.off), int64(r.length)
	var err error
	var op string
	switch r.typ {
	case CmdWrite:
		op = "write"
		switch {
		case r.flags&^CmdFlagFUA != 0:
			return EINVAL
		case c.flags&FlagReadOnly != 0:
			return EPERM
		case !c.inRange(r.off, r.length):
			// The spec asks for ENOSPC on writes past the end
			// (as qemu-nbd does), EINVAL for reads and trims.
			return ENOSPC
		case n == 0:
			return 0
		}
		if r.kept != nil {
			err = c.keeper.KeepWriteAt(r.kept[:n], off)
		} else {
			err = c.exp.WriteAt((*r.buf)[:n], off)
		}

	case CmdFlush:
		if r.flags&^CmdFlagFUA != 0 {
			return EINVAL
		}
		op = "flush"
		err = c.exp.Flush()

	case CmdTrim:
		op = "trim"
		switch {
		case r.flags&^CmdFlagFUA != 0:
			return EINVAL
		case c.flags&FlagReadOnly != 0:
			return EPERM
		case !c.inRange(r.off, r.length):
			return EINVAL
		case n == 0:
			return 0
		}
		err = c.exp.Trim(off, n)

	case CmdWriteZeroes:
		op = "write zeroes"
		switch {
		case r.flags&^(CmdFlagFUA|CmdFlagNoHole) != 0:
			// Includes FAST_ZERO, which we do not advertise.
			return EINVAL
		case c.flags&FlagReadOnly != 0:
			return EPERM
		case !c.inRange(r.off, r.length):
			return ENOSPC
		case n == 0:
			return 0
		}
		if r.flags&CmdFlagNoHole != 0 {
			// The range must stay allocated: a hole punched
			// would let a later write there fail for lack of
			// space.
			err = c.zeroAllocated(off, n)
		} else {
			err = c.exp.WriteZeroes(off, n)
		}

	default:
		c.log.Warn("nbd: protocol error: unknown command", "type", r.typ, "flags", r.flags)
		return EINVAL
	}
	if err == nil && r.flags&CmdFlagFUA != 0 && r.typ != CmdFlush {
		// FUA: the data must be durable before the reply. Export has
		// no per-range sync, so a full Flush does it.
		op += "+fua"
		err = c.exp.Flush()
	}
	if err != nil {
		c.ioError(op, r, err)
		return errnoOf(err)
	}
	return 0
}

// zeroAllocated zeroes [off, off+n) keeping it allocated: through the
// Export's WriteZeroesAllocated, or by writing zeroes.
func (c *conn) zeroAllocated(off, n int64) error {
	if p, ok := c.exp.(Provisioner); ok {
		return p.WriteZeroesAllocated(off, n)
	}
	b := getBuf(int(min(n, 1<<20)))
	defer putBuf(b)
	zero := *b
	clear(zero)
	for n > 0 {
		k := min(n, int64(len(zero)))
		if err := c.exp.WriteAt(zero[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

func (c *conn) ioError(op string, r *request, err error) {
	c.log.Warn("nbd: export error", "op", op, "offset", r.off, "length", r.length, "err", err)
}

func putReplyHeader(b []byte, cookie uint64, errno Errno) {
	binary.BigEndian.PutUint32(b[0:], replyMagic)
	binary.BigEndian.PutUint32(b[4:], uint32(errno))
	binary.BigEndian.PutUint64(b[8:], cookie)
}

// reply sends r's simple reply without data.
func (c *conn) reply(r *request, errno Errno) {
	p := pendingReply{weight: r.weight}
	putReplyHeader(p.hdr[:], r.cookie, errno)
	c.send(p)
}

// send queues one whole reply, which ends its request once written.
// Replies from concurrent requests must not interleave, and at queue depth
// 16 one write per reply costs more than the request itself: so the first
// sender becomes the writer and writes, in one writev, every reply queued
// meanwhile by the others, who go on to their next request. A failed write
// means the peer is gone or the stream is corrupt: closing the connection
// stops the reader too.
func (c *conn) send(p pendingReply) {
	c.wmu.Lock()
	c.pending = append(c.pending, p)
	c.writeQueued(true)
}

// writeQueued writes the queued replies unless another sender is writing, with
// wmu held, which it releases.
func (c *conn) writeQueued(gather bool) {
	if c.writing {
		c.wmu.Unlock()
		return
	}
	c.writing = true
	if gather && c.lim.active.Load() > 1 {
		// Let the handlers finishing at the same moment queue their
		// replies, so one write carries them all.
		c.wmu.Unlock()
		runtime.Gosched()
		c.wmu.Lock()
	}
	c.writeLoop(nil)
}

// writeLoop writes the queued replies until none is left, as the writer,
// with wmu held, which it releases. With tw it does not wait for room in
// the socket: what the socket does not take at once, and the replies
// queued after it, a goroutine writes.
func (c *conn) writeLoop(tw tryWriter) {
	for {
		// The writer's batch and the senders' queue swap arrays.
		batch := c.pending
		c.pending = c.batch[:0]
		c.wmu.Unlock()

		bufs := c.bufs[:0]
		for i := range batch {
			bufs = append(bufs, batch[i].bytes())
		}
		var err error
		if tw == nil {
			err = c.out.writeBuffers(bufs)
		} else if done, terr := tw.tryBuffers(bufs); !done {
			// Only the read loop writes with tw, before transmit
			// waits for the workers.
			c.workers.Add(1)
			go c.finishWrite(tw, batch, bufs)
			return
		} else {
			err = terr
		}
		if !c.wrote(batch, bufs, err) {
			return
		}
	}
}

// finishWrite writes the rest of a batch tryBuffers began, then goes on as
// the writer.
func (c *conn) finishWrite(tw tryWriter, batch []pendingReply, bufs [][]byte) {
	defer c.workers.Done()
	if c.wrote(batch, bufs, tw.finish()) {
		c.writeLoop(nil)
	}
}

// wrote ends the writer's batch, written with the outcome err, and says
// whether more replies are queued, in which case it returns with wmu held
// and the caller writes them.
func (c *conn) wrote(batch []pendingReply, bufs [][]byte, err error) bool {
	if err != nil {
		if !errors.Is(err, net.ErrClosed) {
			c.log.Debug("nbd: reply write failed, closing", "err", err)
		}
		c.nc.Close()
	}
	clear(bufs)
	c.bufs = bufs[:0]
	var weight int64
	for i := range batch {
		putBuf(batch[i].buf)
		weight += batch[i].weight
	}
	// One release for the batch: the limiter's lock is shared with the
	// read loop, on another CPU at queue depth 16.
	c.lim.release(len(batch), weight)
	clear(batch)

	c.wmu.Lock()
	c.batch = batch[:0]
	if len(c.pending) == 0 {
		c.writing = false
		c.wmu.Unlock()
		return false
	}
	return true
}

// limiter is a counting semaphore weighted by bytes. It also counts the
// requests in flight: transmit's drain waits for them to end.
type limiter struct {
	mu     sync.Mutex
	cond   sync.Cond
	n      int
	bytes  int64
	budget int64
	// active is n, readable without the lock by a reply's sender, which
	// only waits for other replies to batch when there are others.
	active atomic.Int32
}

func (l *limiter) init(budget int64) {
	l.cond.L = &l.mu
	l.budget = budget
}

// acquire waits until w more bytes fit.
func (l *limiter) acquire(w int64) {
	l.mu.Lock()
	for l.n >= maxInflight || (l.n > 0 && l.bytes+w > l.budget) {
		l.cond.Wait()
	}
	l.n++
	l.bytes += w
	l.active.Store(int32(l.n))
	l.mu.Unlock()
}

// tryAcquire is acquire when w more bytes fit now; it says whether they did.
func (l *limiter) tryAcquire(w int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n >= maxInflight || (l.n > 0 && l.bytes+w > l.budget) {
		return false
	}
	l.n++
	l.bytes += w
	l.active.Store(int32(l.n))
	return true
}

// release gives back the places of n requests weighing w bytes in all.
func (l *limiter) release(n int, w int64) {
	l.mu.Lock()
	l.n -= n
	l.bytes -= w
	l.active.Store(int32(l.n))
	l.mu.Unlock()
	l.cond.Broadcast()
}

// drain waits until every place is released: every request acquired has
// ended.
func (l *limiter) drain() {
	l.mu.Lock()
	for l.n > 0 {
		l.cond.Wait()
	}
	l.mu.Unlock()
}
