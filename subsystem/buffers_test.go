package subsystem

import (
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

// testPool returns an empty pool whose classes beyond freeLimit are kept
// unused for keep, for the test's length; its trim is stopped at the end.
func testPool(t testing.TB, keep time.Duration) *bufferPool {
	t.Helper()
	was := keepFor
	keepFor = keep
	p := &bufferPool{}
	t.Cleanup(func() {
		p.mu.Lock()
		if p.trim != nil {
			p.trim.Stop()
		}
		p.mu.Unlock()
		keepFor = was
	})
	return p
}

// burst takes n buffers of 1 MiB from the pool and hands them all back,
// as a burst of large writes does, and returns them.
func (p *bufferPool) burst(n int) [][]byte {
	b := make([][]byte, n)
	for i := range b {
		b[i] = p.get(1 << 20)
	}
	for _, x := range b {
		p.put(x)
	}
	return b
}

// A burst's buffers beyond freeLimit are kept while their class gives
// buffers out, and let go down to freeLimit once it has given none out
// between two trims.
func TestPoolKeepsABurstsBuffersWhileTheirClassIsInUse(t *testing.T) {
	p := testPool(t, time.Hour) // only the test trims
	const n = 2 * freeLimit >> 20
	burst := p.burst(n)
	if p.bytes != n<<20 {
		t.Fatalf("the pool keeps %d bytes of a burst of %d", p.bytes, n<<20)
	}
	// In use: the next burst takes the same buffers.
	again := p.get(1 << 20)
	if &again[0] != &burst[n-1][0] {
		t.Error("the next burst does not take the last buffer handed back")
	}
	p.shrink()
	if p.bytes != (n-1)<<20 {
		t.Fatalf("a class in use trimmed to %d bytes", p.bytes)
	}
	p.put(again)
	// Unused since the last trim: down to freeLimit.
	p.shrink()
	if p.bytes != freeLimit {
		t.Fatalf("an idle class trimmed to %d bytes, want %d", p.bytes, freeLimit)
	}
	if p.trim != nil {
		t.Error("the trim is still armed at freeLimit")
	}
	// Over freeLimit by a small class in use: the idle large class goes
	// first.
	small := p.get(4 << 10)
	p.put(small)
	p.shrink()
	if want := int64(freeLimit - 1<<20 + 4<<10); p.bytes != want || len(p.free[0]) != 1 {
		t.Errorf("the pool holds %d bytes, %d of 4 KiB, after a small class's buffer came back; want %d, 1", p.bytes, len(p.free[0]), want)
	}
}

// The trim runs by itself once the pool holds more than freeLimit.
func TestPoolLetsAnIdleBurstsBuffersGo(t *testing.T) {
	p := testPool(t, time.Millisecond)
	p.burst(2 * freeLimit >> 20)
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		bytes, armed := p.bytes, p.trim != nil
		p.mu.Unlock()
		if bytes <= freeLimit && !armed {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("the pool still holds %d bytes (trim armed: %v)", bytes, armed)
		}
	}
}

// A burst's buffers go once the writes of their class have slowed to a
// trickle: the class is still in use, but one buffer of it at a time
// does, not the burst's.
func TestPoolLetsABurstsBuffersGoUnderATrickleOfTheirClass(t *testing.T) {
	p := testPool(t, time.Hour) // only the test trims
	const n = 4 * freeLimit >> 20
	for range 2 { // the second takes the first's buffers
		p.burst(n)
	}
	// The burst was since the last trim: all kept.
	p.shrink()
	if p.bytes != n<<20 {
		t.Fatalf("the pool keeps %d bytes of a burst of %d just after it", p.bytes, n<<20)
	}
	for range 10 {
		p.put(p.get(1 << 20))
	}
	p.shrink()
	if p.bytes > freeLimit {
		t.Errorf("the pool keeps %d bytes of a %d-byte burst under a trickle of one buffer at a time, want at most %d", p.bytes, n<<20, freeLimit)
	}
}

// Bursts minutes apart (the bench's burst rounds about four minutes
// apart, a database's checkpoints every five) find the pages of the one
// before: the trims that run in such a gap leave them all.
func TestPoolKeepsABurstsBuffersForTheNextBurstMinutesLater(t *testing.T) {
	p := testPool(t, keepFor) // the pool's own keep; only the test trims
	const gap = 5 * time.Minute
	const n = 4 * freeLimit >> 20
	burst := p.burst(n)
	for range int(gap / keepFor) {
		p.shrink()
	}
	if p.bytes != n<<20 {
		t.Fatalf("%v after a burst of %d bytes, the pool keeps %d (trims every %v)", gap, n<<20, p.bytes, keepFor)
	}
	if again := p.get(1 << 20); &again[0] != &burst[n-1][0] {
		t.Error("the next burst does not take the last buffer handed back")
	}
}

// BenchmarkBurstBuffer is what a burst's 1 MiB write pays for its sidefile
// buffer, the data read into it included: fresh pages from the system, as
// a session's first burst takes and one after the pool let its class go
// (the system took the memory back), or a buffer the pool kept from the
// burst before. A burst of 256 writes holds 256 buffers at once.
func BenchmarkBurstBuffer(b *testing.B) {
	const n = 256
	data := make([]byte, 1<<20)
	b.Run("fresh", func(b *testing.B) {
		held := make([][]byte, 0, n)
		b.SetBytes(1 << 20)
		for b.Loop() {
			if len(held) == n {
				b.StopTimer()
				held = held[:0]
				debug.FreeOSMemory()
				b.StartTimer()
			}
			buf := (&bufferPool{}).get(1 << 20)
			copy(buf, data)
			held = append(held, buf)
		}
	})
	b.Run("kept", func(b *testing.B) {
		p := testPool(b, time.Hour)
		p.burst(n)
		held := make([][]byte, 0, n)
		b.SetBytes(1 << 20)
		for b.Loop() {
			if len(held) == n {
				for _, x := range held {
					p.put(x)
				}
				held = held[:0]
			}
			buf := p.get(1 << 20)
			copy(buf, data)
			held = append(held, buf)
		}
	})
}

// The reserve stays in the pool whatever the idle time, beyond freeLimit;
// a burst larger than it is let go down to it, and asking for the reserve
// again, or for a smaller one, populates nothing more.
func TestPoolKeepsItsReserveWhateverTheIdleTime(t *testing.T) {
	p := testPool(t, time.Hour) // only the test trims
	const reserve = 2 * freeLimit
	p.fill(reserve - 1) // rounded up to whole buffers
	if p.bytes != reserve || len(p.free[len(p.free)-1]) != reserve>>maxBufShift {
		t.Fatalf("after a reserve of %d bytes the pool holds %d, %d buffers of 1 MiB", reserve, p.bytes, len(p.free[len(p.free)-1]))
	}
	for range 5 { // hours idle
		p.shrink()
	}
	if p.bytes != reserve {
		t.Fatalf("idle, the pool keeps %d bytes of its reserve of %d", p.bytes, reserve)
	}
	if p.trim != nil {
		t.Error("the trim is armed over the reserve alone")
	}
	// A burst twice the reserve takes the reserve's buffers first.
	const n = 2 * reserve >> 20
	burst := make([][]byte, n)
	for i := range burst {
		burst[i] = p.get(1 << 20)
	}
	if p.bytes != 0 {
		t.Fatalf("a burst of %d MiB left %d bytes free of the reserve", n, p.bytes)
	}
	for _, b := range burst {
		p.put(b)
	}
	if p.trim == nil {
		t.Error("the trim is not armed with a burst beyond the reserve and freeLimit")
	}
	for range 3 {
		p.shrink()
	}
	if want := int64(reserve + freeLimit); p.bytes != want {
		t.Errorf("idle after the burst, the pool keeps %d bytes, want the reserve and freeLimit, %d", p.bytes, want)
	}
	p.fill(reserve)
	p.fill(reserve / 2)
	if p.reserve != reserve {
		t.Errorf("asked again for %d and %d bytes, the reserve is %d", reserve, reserve/2, p.reserve)
	}
}

// Reserves asked for at once make the largest, not their sum.
func TestPoolReservesAtOnceMakeTheLargest(t *testing.T) {
	p := testPool(t, time.Hour)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { p.fill(int64(8+i) << 20) })
	}
	wg.Wait()
	if p.reserve != 11<<20 || p.bytes != 11<<20 {
		t.Errorf("reserves of 8 to 11 MiB at once: reserve %d, %d bytes free, want %d", p.reserve, p.bytes, 11<<20)
	}
}
