package secondary

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"duplex/crc32c"
	"duplex/recordset"
	"duplex/transport"
)

// frameSumChunk is the piece of a frame read from the socket and
// checksummed at once, while the piece is still in the processor's cache
// (crc32c.Sums): small enough to stay there, large enough that the reads
// it takes cost little beside the checksums they save.
const frameSumChunk = 64 << 10

// sumNext is how the frame after f is to be read (crc32c.Sums.Next), now
// cur: in checksummed pieces while the frames bring mostly updates large
// enough to be checksummed from them, in one read otherwise, where the
// checksums of the pieces would be taken for nothing (4 KiB writes, each
// read again whole). A frame of a few pieces (heartbeats, a short set)
// changes nothing.
func sumNext(cur int, f []byte, sets []*recordset.RecordSet) int {
	if len(f) < 4*frameSumChunk {
		return cur
	}
	large := 0
	for _, rs := range sets {
		for i := range rs.Updates {
			if n := len(rs.Updates[i].Data); n >= 2*frameSumChunk {
				large += n
			}
		}
	}
	if 2*large >= len(f) {
		return frameSumChunk
	}
	return 0
}

// arrival is a frame read from the link, checked and decoded by the
// goroutine that read it (readFrames): the checksums of a cut's backlog,
// megabytes a frame, are verified while the receiver journals the frames
// before it, instead of between one journal write and the next. What to do
// about it (count it, refuse the primary, receive it) is left to the
// receiver, which sees arrivals in the order they were read.
type arrival struct {
	err error // reading failed: the link ends here
	// refuse, if set, is why the primary must be refused: the frame or a
	// record set in it is larger than this secondary accepts, which
	// resending cannot help.
	refuse string
	open   error // the frame itself is damaged
	typ    byte
	// bad: the frame's body (a bundle, a Features frame) did not decode;
	// corrupt: record sets of a bundle that did not, discarded (the
	// primary resends them) while the others are received.
	bad     error
	corrupt []error
	reads   uint64  // a Features frame's
	in      inbound // a record-set or bundle frame's
	// plain and wire are the bytes of the record sets decoded, plain and
	// as they came over the link.
	plain, wire uint64
}

// inbound is a frame received, with the record sets and heartbeats decoded
// from it (which alias it).
type inbound struct {
	frame []byte
	buf   []byte // the buffer frame lies in, recycled once nothing reads it
	sets  []*recordset.RecordSet
	beats []transport.Heartbeat
	at    time.Time // when it was read off the link, when tracing
	// roomWait is how long the reader waited for room before reading it,
	// when tracing: meanwhile the frame may have waited in the socket.
	roomWait time.Duration
}

// readFrames reads conn's frames, checks and decodes each (decodeFrame)
// and passes it on in frames until reading fails (serve closes conn as it
// returns) or done is closed. It reads no further frame while room holds
// its bound of bytes: those stay in the socket, whose full window holds the
// primary back.
func (s *Secondary) readFrames(conn transport.Conn, frames chan<- arrival, room *readRoom, done <-chan struct{}) {
	var sums *crc32c.Sums
	if fs, ok := conn.(transport.FrameSums); ok {
		sums = &crc32c.Sums{Next: frameSumChunk}
		fs.SetFrameSums(sums)
	}
	// placed is the buffer of the frame Recv placed last (placeFrame).
	var placed []byte
	if fp, ok := conn.(transport.FramePlacer); ok {
		fp.SetFramePlace(func(head []byte, n int) []byte {
			var f []byte
			placed, f = placeFrame(head, n)
			return f
		})
	}
	for {
		var waitFrom time.Time
		if s.tracing {
			waitFrom = time.Now()
		}
		if !room.wait(done) {
			return
		}
		var roomWait time.Duration
		if s.tracing {
			roomWait = time.Since(waitFrom)
		}
		f, err := conn.Recv()
		buf := f
		if placed != nil {
			buf, placed = placed, nil
		}
		a := arrival{err: err}
		if err == nil {
			a = s.decodeFrame(f, buf, sums)
			if sums != nil {
				sums.Next = sumNext(sums.Next, f, a.in.sets)
				sums.Forget()
			}
		}
		if s.tracing {
			a.in.at, a.in.roomWait = time.Now(), roomWait
		}
		room.take(a.held())
		select {
		case frames <- a:
		case <-done:
			return
		}
		if err != nil {
			return
		}
	}
}

// held is the memory an arrival keeps until it is received: its frame,
// and the record sets decoded from compressed ones (plain ones alias the
// frame).
func (a *arrival) held() int64 {
	n := int64(len(a.in.frame))
	if a.plain > a.wire {
		n += int64(a.plain - a.wire)
	}
	return n
}

// readRoom bounds the bytes of the frames read ahead of the receiver (queued
// or in its batch), which a frame count does not: the primary fills bundles
// up to the largest frame this secondary accepts, and a compressed one holds
// its decoded record sets as well, so 64 of them could hold gigabytes while
// the journal is slow. The bound is twice the largest frame rather than a
// fixed amount: the next frame of that size is read and checked while one
// is journaled, as before, and the memory follows the frame limit the
// operator chose. One frame is always admitted when nothing is held, so
// that one larger than the bound never waits for ever.
type readRoom struct {
	mu    sync.Mutex
	held  int64
	limit int64
	peak  int64         // the most held at once
	freed chan struct{} // signalled when bytes are released
}

func newReadRoom(limit int64) *readRoom {
	return &readRoom{limit: limit, freed: make(chan struct{}, 1)}
}

// wait returns true once another frame may be read, or false if done is
// closed first.
func (r *readRoom) wait(done <-chan struct{}) bool {
	for {
		r.mu.Lock()
		ok := r.held == 0 || r.held < r.limit
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-r.freed:
		case <-done:
			return false
		}
	}
}

func (r *readRoom) take(n int64) {
	r.mu.Lock()
	r.held += n
	r.peak = max(r.peak, r.held)
	r.mu.Unlock()
}

// release returns n bytes taken, once the receiver is done with them.
func (r *readRoom) release(n int64) {
	if n == 0 {
		return
	}
	r.mu.Lock()
	r.held -= n
	r.mu.Unlock()
	select {
	case r.freed <- struct{}{}:
	default:
	}
}

// decodeFrame checks frame f, lying in buf, and decodes what it carries. A
// frame nothing will be received from is recycled here.
func (s *Secondary) decodeFrame(f, buf []byte, sums *crc32c.Sums) arrival {
	if len(f) > s.maxFrame() {
		// The TCP transport stops such a frame at its length; any
		// other link is held to the same announced limit.
		return arrival{refuse: fmt.Sprintf("a frame of %d bytes is larger than this secondary accepts (%d): the primary must split it", len(f), s.maxFrame())}
	}
	typ, body, err := transport.Open(f)
	if err != nil {
		putFrame(buf)
		return arrival{open: err}
	}
	a := arrival{typ: typ}
	var sets [][]byte
	overhead := transport.FrameOverhead
	switch typ {
	case transport.TypeRecordSet:
		sets = [][]byte{body}
	case transport.TypeBundle:
		b, err := transport.DecodeBundle(body)
		if err != nil {
			putFrame(buf)
			a.bad = err
			return a
		}
		sets, a.in.beats = b.Sets, b.Beats
		overhead = transport.BundleOverhead(len(sets), len(b.Beats))
	case transport.TypeFeatures:
		a.reads, a.bad = transport.DecodeFeatures(body)
		putFrame(buf)
		return a
	default:
		putFrame(buf)
		return a
	}
	if n := transport.DecodedFrameSize(sets, overhead); n > s.maxFrame() {
		// Compressed record sets, decoded, are held to the frame
		// limit as plain ones are, before any is decoded.
		a.refuse = fmt.Sprintf("record sets decoding to a frame of %d bytes, larger than this secondary accepts (%d): the primary must split it", n, s.maxFrame())
		return a
	}
	a.in.frame, a.in.buf = f, buf
	a.in.sets = make([]*recordset.RecordSet, 0, len(sets))
	for _, body := range sets {
		link := len(body)
		body, err := s.unzstd.Expand(body)
		if errors.Is(err, transport.ErrFrameTooLarge) {
			// Its header CRC holds: the size is the sender's, and
			// resending the same set cannot help.
			a.refuse = fmt.Sprintf("a compressed record set is larger than this secondary accepts (%v): the primary must split it", err)
			return a
		}
		if err != nil {
			a.corrupt = append(a.corrupt, err)
			continue
		}
		rs, err := recordset.DecodeSummed(body, s.cfg.Limits, sums)
		if h, perr := recordset.PeekHeader(body); errors.Is(err, recordset.ErrTooLarge) && perr == nil && h.Size() == len(body) {
			// Intact (its header CRC holds), so not a damaged length:
			// resending the same set cannot help. Say why, on both
			// sides, instead of discarding it as corrupt for ever.
			a.refuse = fmt.Sprintf("a record set is larger than this secondary accepts (%v): the primary must split it", err)
			return a
		}
		if err != nil {
			// The others of a bundle check themselves: take them, and
			// the primary resends this one.
			a.corrupt = append(a.corrupt, err)
			continue
		}
		a.in.sets = append(a.in.sets, rs)
		a.plain, a.wire = a.plain+uint64(len(body)), a.wire+uint64(link)
	}
	return a
}
