package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// mixPrompter promises every write; one WriteNow in 20 then finds the writes
// held (the write goes to a worker) and one in 20 fails.
type mixPrompter struct {
	*memExport
	mu   sync.Mutex
	rng  *rand.Rand
	held map[int64]bool // offsets of the writes held since the client looked
}

func (p *mixPrompter) Prompt(int64, int) bool { return true }

func (p *mixPrompter) WriteNow(b []byte, off int64) (bool, error) {
	p.mu.Lock()
	x := p.rng.IntN(20)
	if x == 0 {
		p.held[off] = true
	}
	p.mu.Unlock()
	switch x {
	case 0:
		return true, nil
	case 1:
		return false, errors.New("injected write failure")
	}
	return false, p.WriteAt(b, off)
}

// wasHeld says whether a write at off was held since the last call.
func (p *mixPrompter) wasHeld(off uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.held[int64(off)]
	delete(p.held, int64(off))
	return h
}

// TestBatchesOfMixedRequests: clients send batches of WRITEs each followed
// by a READ of its block, TRIMs, WRITE_ZEROES and FLUSHes, each request of
// a batch on a block of its own, while some of the read loop's writes are
// held or fail, and some clients hang up (a reset) with their batch
// unanswered. Every request gets its one reply with its own error; a READ
// sent behind a write the read loop served returns what it wrote; the
// server's Close returns.
func TestBatchesOfMixedRequests(t *testing.T) {
	fp := &mixPrompter{memExport: newMemExport(1 << 20), rng: rand.New(rand.NewPCG(1, 2)), held: map[int64]bool{}}
	addr := startServer(t, &Server{Exports: exportMap{"disk": fp}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var wg sync.WaitGroup
	const clients, blocks = 4, 64
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 9))
			for range 10 {
				if err := mixedBatches(fp, addr, rng, uint64(c*blocks)*4096, blocks); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// mixedBatches runs one connection's batches over the blocks at base.
func mixedBatches(fp *mixPrompter, addr string, rng *rand.Rand, base uint64, blocks int) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := NewClient(nc, "disk"); err != nil {
		return err
	}
	nc.SetDeadline(time.Now().Add(time.Minute))
	type sent struct {
		cookie uint64
		write  bool
		read   []byte // a READ's: what the write before it wrote
	}
	hangUp := -1
	if rng.IntN(4) == 0 {
		hangUp = rng.IntN(20)
	}
	for round := range 20 {
		var b []byte
		var reqs []sent
		var offs []uint64
		for i, blk := range rng.Perm(blocks)[:1+rng.IntN(12)] {
			off, ck := base+uint64(blk)*4096, uint64(round*100+2*i)
			offs = append(offs, off)
			switch rng.IntN(6) {
			case 0, 1, 2:
				p := bytes.Repeat([]byte{byte(rng.Uint32())}, 4096)
				b = append(b, requestBytes(0, CmdWrite, ck, off, 4096, p)...)
				b = append(b, requestBytes(0, CmdRead, ck+1, off, 4096, nil)...)
				reqs = append(reqs, sent{cookie: ck, write: true}, sent{cookie: ck + 1, read: p})
			case 3:
				b = append(b, requestBytes(0, CmdTrim, ck, off, 4096, nil)...)
				reqs = append(reqs, sent{cookie: ck})
			case 4:
				b = append(b, requestBytes(0, CmdWriteZeroes, ck, off, 4096, nil)...)
				reqs = append(reqs, sent{cookie: ck})
			case 5:
				b = append(b, requestBytes(0, CmdFlush, ck, 0, 0, nil)...)
				reqs = append(reqs, sent{cookie: ck})
			}
		}
		if _, err := nc.Write(b); err != nil {
			return err
		}
		if round == hangUp {
			nc.(*net.TCPConn).SetLinger(0)
			return nil
		}
		errnos, data := map[uint64]uint32{}, map[uint64][]byte{}
		for range reqs {
			var h [16]byte
			if _, err := io.ReadFull(nc, h[:]); err != nil {
				return err
			}
			ck, errno := binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint32(h[4:])
			if _, dup := errnos[ck]; dup {
				return errors.New("two replies to one request")
			}
			errnos[ck] = errno
			if ck%2 == 1 && errno == 0 {
				d := make([]byte, 4096)
				if _, err := io.ReadFull(nc, d); err != nil {
					return err
				}
				data[ck] = d
			}
		}
		held := false
		for _, off := range offs {
			held = fp.wasHeld(off) || held
		}
		for i, r := range reqs {
			switch errno, ok := errnos[r.cookie]; {
			case !ok:
				return errors.New("a request without its reply")
			case r.write:
			case errno != 0:
				return errors.New("a READ, TRIM, WRITE_ZEROES or FLUSH failed")
			case r.read != nil && !held && errnos[reqs[i-1].cookie] == 0 && !bytes.Equal(data[r.cookie], r.read):
				// A write held went to a worker, which the READ
				// behind it may overtake.
				return errors.New("a READ sent behind a write the read loop served does not see it")
			}
		}
	}
	return nil
}
