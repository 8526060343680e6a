package subsystem

import (
	"runtime"
	"slices"
	"sync"
	"time"

	"duplex/internal/sizeclass"
)

// A write's update holds a copy of its data from capture until the
// secondary has journaled it. Allocated afresh for every write, that copy
// cost more than the capture itself at 4 KiB (the allocation, the zeroing
// the copy then overwrites, the page faults of fresh heap, the collector),
// so the buffers of journaled writes are kept for later writes instead.
//
// A buffer comes back only through Recycle, from the data mover, once
// nothing of the mover reads it any more; Recycle keeps it back until the
// write's own pwrite is done. Under the race detector every buffer taken
// back is overwritten with a poison pattern, so a buffer handed back while
// something still reads it shows up as corrupt data in any test.
//
// A burst of large writes that the sidefile holds takes a buffer for each
// of them until the secondary has journaled it. Fresh ones cost more than
// replicating them (the runtime's and the kernel's work to fault, zero,
// charge and later give back their pages: bench/RESULTS.md), so the pool
// keeps every buffer handed back, beyond freeLimit too, as long as a
// burst of its class takes it again: the next burst takes the same pages.
// The buffers of a class that stayed free the whole of keepFor (twice that
// at most) are let go down to freeLimit: those of a class unused, and
// those of a class whose writes slowed to a trickle after its burst,
// which would otherwise hold the burst's memory for as long as one write
// of its size came every keepFor.
//
// A session's first burst, and one after an idle class was let go, still
// takes fresh pages for every buffer. The reserve (Reserve) is buffers of
// the largest class populated before any burst and never let go: a burst
// of up to that much finds its memory ready whenever it comes, for memory
// held from the start.
const (
	minBufShift = 12 // 4 KiB
	maxBufShift = 20 // 1 MiB: larger writes cost more in their copy than in their allocation
	// freeLimit bounds the bytes kept free for good over all classes: at
	// 4 KiB it holds 4,096 buffers, more than one interval of writes at
	// the rates this machine reaches, so the pool is refilled before it
	// runs dry.
	freeLimit = 16 << 20
	// poisonByte fills recycled buffers under the race detector.
	poisonByte = 0xDB
	// populateClass is the smallest class whose fresh buffers are
	// populated at once (populate): 64 KiB, a large object of whole
	// pages of its own in the Go heap.
	populateClass = 16 - minBufShift
)

// bufferPool is a last-in first-out free list per power-of-two size class.
// Last in, first out keeps the buffers warm in the cache, and makes reuse
// deterministic for the tests that catch a buffer recycled too early.
type bufferPool struct {
	mu    sync.Mutex
	free  [maxBufShift - minBufShift + 1][][]byte
	bytes int64
	// low is the fewest buffers each class held free since the last trim:
	// that many were not needed; trim is armed while the pool holds more
	// than freeLimit.
	low  [maxBufShift - minBufShift + 1]int
	trim *time.Timer
	// reserve is the bytes of the largest class the trims leave free
	// beyond freeLimit, whatever the idle time (Reserve).
	reserve int64
}

// keepFor is how long a class of buffers beyond freeLimit is kept unused:
// long enough for the bursts of an application that writes in bursts
// minutes apart (a database's checkpoints, the bench's burst rounds about
// four minutes apart) to find the pages of the one before. At 30 s, such a
// burst took fresh pages every time, as a session's first one does: 300 µs
// of CPU per MiB more than from the pool (bench/RESULTS.md). The memory
// kept is no more than was in use at once, which the sidefiles' limits
// bound. A variable for tests.
var keepFor = 10 * time.Minute

var buffers bufferPool

// bufClass returns the class of a buffer of n bytes, or -1 for one too
// large to keep.
func bufClass(n int) int { return sizeclass.Of(n, minBufShift, maxBufShift) }

// get returns a buffer of length n; its contents are not zeroed.
func (p *bufferPool) get(n int) []byte {
	c := bufClass(n)
	if c < 0 {
		return make([]byte, n)
	}
	p.mu.Lock()
	if k := len(p.free[c]); k > 0 {
		b := p.free[c][k-1]
		p.free[c][k-1] = nil
		p.free[c] = p.free[c][:k-1]
		p.bytes -= int64(cap(b))
		p.low[c] = min(p.low[c], k-1)
		p.mu.Unlock()
		return b[:n]
	}
	p.low[c] = 0
	p.mu.Unlock()
	return fresh(c)[:n]
}

// fresh returns a new buffer of class c, its pages populated from
// populateClass on.
func fresh(c int) []byte {
	b := make([]byte, 1<<(c+minBufShift))
	if c >= populateClass {
		populate(b)
	}
	return b
}

// Reserve has the pool hold at least n bytes of the largest class free
// whatever the idle time, populating those it does not hold yet now (about
// 0.1-0.4 ms of CPU per MiB: the page faults a burst would otherwise
// take); it returns once they are in the pool. n is rounded up to whole
// buffers. Every primary of the process asks for its own; the pool keeps
// the largest.
func Reserve(n int64) { buffers.fill(n) }

func (p *bufferPool) fill(n int64) {
	const c = maxBufShift - minBufShift
	n = (n + 1<<maxBufShift - 1) &^ (1<<maxBufShift - 1)
	for {
		p.mu.Lock()
		if p.reserve >= n {
			p.mu.Unlock()
			return
		}
		// Counted before it is made, so that a Reserve at the same time
		// does not make it too.
		p.reserve += 1 << maxBufShift
		p.mu.Unlock()
		b := fresh(c)
		p.mu.Lock()
		p.free[c] = append(p.free[c], b)
		p.bytes += int64(len(b))
		p.mu.Unlock()
		// Populating a buffer holds the processor (a raw system call):
		// let the writes and sends of a primary pinned to one CPU in
		// between.
		runtime.Gosched()
	}
}

// put keeps b for a later get. b must be a buffer from get, which nothing
// reads or writes any more; one of another capacity is left to the
// garbage collector.
func (p *bufferPool) put(b []byte) {
	n := cap(b)
	c := bufClass(n)
	if c < 0 || n != 1<<(c+minBufShift) {
		return
	}
	b = b[:n]
	if raceEnabled {
		for i := range b {
			b[i] = poisonByte
		}
	}
	p.mu.Lock()
	p.free[c] = append(p.free[c], b)
	p.bytes += int64(n)
	if p.bytes > freeLimit+p.reserve && p.trim == nil {
		p.trim = time.AfterFunc(keepFor, p.shrink)
	}
	p.mu.Unlock()
}

// shrink lets the buffers that stayed free since the last call go,
// largest class first, down to freeLimit in all beyond the reserve, and
// calls itself again after keepFor while the pool holds more. The oldest
// free buffers go: the free lists are last in, first out.
func (p *bufferPool) shrink() {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := freeLimit + p.reserve
	for c := len(p.free) - 1; c >= 0; c-- {
		idle := min(p.low[c], len(p.free[c]))
		if c == len(p.free)-1 {
			idle = min(idle, len(p.free[c])-int(p.reserve>>maxBufShift))
		}
		k := 0
		for ; k < idle && p.bytes > keep; k++ {
			p.bytes -= int64(cap(p.free[c][k]))
			p.free[c][k] = nil
		}
		p.free[c] = slices.Delete(p.free[c], 0, k)
		p.low[c] = len(p.free[c])
	}
	switch {
	case p.bytes <= keep:
		if p.trim != nil {
			p.trim.Stop()
		}
		p.trim = nil
	case p.trim == nil:
		p.trim = time.AfterFunc(keepFor, p.shrink)
	default:
		p.trim.Reset(keepFor)
	}
}
