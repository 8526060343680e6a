package harness

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards TCP connections from the primary to the secondary's listen
// address and injects the faults of a real link between them: it can cut
// every connection (and refuse new ones while down), hang them (a peer
// that does not answer), delay everything it forwards, limit its
// bandwidth, and flip a byte of the stream at a chosen moment.
//
// It works on the byte stream, below Duplex's framing: a flipped byte can land
// in a frame's body (its CRC catches it) or in a frame's length prefix (the
// receiver loses the frame boundaries), just as a faulty middlebox or NIC
// could do it.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	pairs   map[*pair]struct{}
	down    bool
	hung    bool
	closed  bool
	latency time.Duration
	rate    int64 // bytes per second in each direction, 0: unlimited
	// corrupt[d] is how many of the next chunks forwarded in direction d
	// (0: primary to secondary, 1: back) get one byte flipped.
	corrupt [2]int
	// corruptLen[d] is how many of the next frame length prefixes forwarded
	// in direction d get one bit flipped.
	corruptLen [2]int

	Accepted       atomic.Int64
	Refused        atomic.Int64
	Flipped        atomic.Int64
	FlippedLengths atomic.Int64 // of Flipped, those in a length prefix
	Forwarded      atomic.Int64 // bytes, both directions
}

// Directions of the stream.
const (
	ToSecondary = 0
	ToPrimary   = 1
)

type pair struct {
	a, b net.Conn // a: from the primary; b: to the secondary
	// hung: what either end sends is dropped (Hang), never forwarded.
	hung atomic.Bool
}

func (p *pair) close() {
	p.a.Close()
	p.b.Close()
}

// NewProxy listens on listen and forwards to target.
func NewProxy(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, pairs: map[*pair]struct{}{}}
	go p.serve()
	return p, nil
}

// Addr is the listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.down || p.closed
		p.mu.Unlock()
		if refuse {
			// A closed connection, not a refused one: the primary sees the
			// link die right after connecting, as behind a broken route.
			p.Refused.Add(1)
			c.Close()
			continue
		}
		go p.connect(c)
	}
}

func (p *Proxy) connect(a net.Conn) {
	b, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		a.Close()
		return
	}
	pr := &pair{a: a, b: b}
	p.mu.Lock()
	if p.down || p.closed {
		p.mu.Unlock()
		pr.close()
		return
	}
	p.pairs[pr] = struct{}{}
	pr.hung.Store(p.hung)
	p.mu.Unlock()
	p.Accepted.Add(1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(pr, a, b, ToSecondary) }()
	go func() { defer wg.Done(); p.pipe(pr, b, a, ToPrimary) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.pairs, pr)
	p.mu.Unlock()
}

type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst. A reader stamps each chunk with the time it may be
// delivered (now + latency) and a writer holds it until then: every byte is
// delayed by the latency in force when it arrived, without limiting the
// throughput to one chunk per latency, and order is kept.
func (p *Proxy) pipe(pr *pair, src, dst net.Conn, dir int) {
	defer pr.close()
	q := make(chan chunk, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var free time.Time // when the paced link has sent what it was given
		for c := range q {
			if d := time.Until(c.due); d > 0 {
				time.Sleep(d)
			}
			if r := p.Rate(); r > 0 {
				if now := time.Now(); free.Before(now) {
					free = now
				}
				free = free.Add(time.Duration(int64(len(c.data)) * int64(time.Second) / r))
				time.Sleep(time.Until(free))
			}
			if _, err := dst.Write(c.data); err != nil {
				pr.close()
				for range q {
				}
				return
			}
			p.Forwarded.Add(int64(len(c.data)))
		}
	}()
	var fr framer
	for {
		buf := make([]byte, 64<<10)
		n, err := src.Read(buf)
		if n > 0 && !pr.hung.Load() {
			data := buf[:n]
			p.mu.Lock()
			lat := p.latency
			flip := p.corrupt[dir] > 0
			if flip {
				p.corrupt[dir]--
			}
			if p.corruptLen[dir] > 0 && !fr.armed {
				p.corruptLen[dir]--
				fr.arm()
			}
			p.mu.Unlock()
			if fr.scan(data) {
				p.Flipped.Add(1)
				p.FlippedLengths.Add(1)
			}
			if flip {
				// Any bit of any byte of the chunk: flips are never a no-op.
				data[rand.IntN(n)] ^= 1 << rand.IntN(8)
				p.Flipped.Add(1)
			}
			q <- chunk{data: data, due: time.Now().Add(lat)}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-done
}

// framer follows the framing of the link (a 4-byte big-endian length, then
// that many bytes) as the sender wrote it, so that a bit can be flipped in a
// length prefix rather than in a frame: the receiver then loses the frame
// boundaries, which a frame CRC cannot catch.
type framer struct {
	hdr   [4]byte
	hdrN  int   // header bytes seen of the current prefix
	left  int64 // body bytes still to come
	armed bool  // flip a bit in the next length prefix
	at    int   // which of its 4 bytes
}

func (f *framer) arm() {
	f.armed, f.at = true, rand.IntN(4)
}

// scan follows data through the framing, flipping the armed bit; it reports
// whether it flipped one.
func (f *framer) scan(data []byte) (flipped bool) {
	for i := 0; i < len(data); {
		if f.left > 0 {
			step := int(min(f.left, int64(len(data)-i)))
			f.left -= int64(step)
			i += step
			continue
		}
		f.hdr[f.hdrN] = data[i] // the sender's byte, before any flip
		if f.armed && f.hdrN == f.at {
			data[i] ^= 1 << rand.IntN(8)
			f.armed, flipped = false, true
		}
		f.hdrN++
		i++
		if f.hdrN == 4 {
			f.left = int64(binary.BigEndian.Uint32(f.hdr[:]))
			f.hdrN = 0
		}
	}
	return flipped
}

// CorruptLength flips one bit in the length prefix of the next frame
// forwarded in direction dir.
func (p *Proxy) CorruptLength(dir int) {
	p.mu.Lock()
	p.corruptLen[dir]++
	p.mu.Unlock()
}

// Cut closes every forwarded connection. While down, new connections are
// closed as soon as they are accepted; Restore ends that.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.down = true
	pairs := make([]*pair, 0, len(p.pairs))
	for pr := range p.pairs {
		pairs = append(pairs, pr)
	}
	p.mu.Unlock()
	for _, pr := range pairs {
		pr.close()
	}
}

// Hang makes the proxy a peer that does not answer, as a stopped process
// or a partition that drops packets would be, but without what SIGSTOP
// leaves behind: connections stay open, and everything sent on them,
// from now on and on connections made meanwhile, is dropped in both
// directions. A stopped process would read what the kernel buffered for
// it once it runs again, and answer a request its client gave up on.
// Restore closes the hung connections: nothing sent while hung is ever
// delivered.
func (p *Proxy) Hang() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hung = true
	for pr := range p.pairs {
		pr.hung.Store(true)
	}
}

// Restore lets connections through again after Cut or Hang.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.hung = false
	var hung []*pair
	for pr := range p.pairs {
		if pr.hung.Load() {
			hung = append(hung, pr)
		}
	}
	p.mu.Unlock()
	for _, pr := range hung {
		pr.close()
	}
}

// SetLatency delays every chunk forwarded from now on by d (0: none).
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// SetRate limits what is forwarded in each direction to bytesPerSec from
// now on (0: no limit), as a slow link would: a resync then takes long
// enough to be interrupted in its middle.
func (p *Proxy) SetRate(bytesPerSec int64) {
	p.mu.Lock()
	p.rate = bytesPerSec
	p.mu.Unlock()
}

// Rate is the limit SetRate set.
func (p *Proxy) Rate() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate
}

// Corrupt flips one bit in each of the next n chunks forwarded in direction
// dir.
func (p *Proxy) Corrupt(dir, n int) {
	p.mu.Lock()
	p.corrupt[dir] += n
	p.mu.Unlock()
}

// Close stops listening and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.Cut()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
