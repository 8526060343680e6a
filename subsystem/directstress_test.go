package subsystem

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/sidefile"
	"duplex/timer"
	"duplex/volume"
)

// Large writes past the page cache, large writes through it (paced) and
// small writes through it, mixed over neighbouring and overlapping ranges
// from several writers, with buffered reads reading ahead beside them and
// copies reading the volume past the page cache: every read of a range a
// writer alone writes returns what it wrote last, every copy carries the
// volume's content as of its timestamp, and in the end the page cache, the
// disk and the replayed sidefile agree. A stale page cache page beside a
// direct write would show in the reads; a copy that read the disk under a
// newer cached page, in the copy's data.
//
// DUPLEX_DIRECT_STRESS_ROUNDS runs longer than the default.
func TestMixedDirectAndBufferedWritesReadBack(t *testing.T) {
	const (
		writers = 6
		// Each writer's own range: its ends inside large folios, which
		// its neighbours' writes share.
		home = 3<<20 + 12<<10
		// Beyond the writers' own ranges, one they all write at once:
		// overlapping writes, landing in timestamp order.
		shared = 4 << 20
		size   = writers*home + shared
	)
	rounds := 150
	if testing.Short() || raceEnabled {
		rounds = 30
	}
	if s := os.Getenv("DUPLEX_DIRECT_STRESS_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("DUPLEX_DIRECT_STRESS_ROUNDS=%q: %v", s, err)
		}
		rounds = n
	}
	_, v := directVolumeOf(t, size)

	const limit = 16 << 20
	side := sidefile.New(limit)
	// Some large writes paced (through the page cache), most not.
	side.SetPacing(sidefile.Pacing{Start: 0.7, MaxDelay: 200 * time.Microsecond})
	ss := New("ss1", timer.New(), side, map[string]*volume.Volume{"v0": v}, []string{"v0"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The drainer replays every drained update onto model, and checks
	// each copy against it: the volume's content at the copy's stamp.
	model := make([]byte, size)
	var drainMu sync.Mutex
	drain := func() {
		drainMu.Lock()
		defer drainMu.Unlock()
		us, _, _ := ss.Drain()
		for _, u := range us {
			switch u.Kind {
			case recordset.KindWrite:
				copy(model[u.Offset:], u.Data)
			case recordset.KindZeroes, recordset.KindTrim:
				clear(model[u.Offset : u.Offset+u.Length])
			case recordset.KindCopy:
				if !bytes.Equal(u.Data, model[u.Offset:u.Offset+u.Length]) {
					at := firstDiff(u.Data, model[u.Offset:u.Offset+u.Length])
					t.Errorf("copy [%d, +%d) read %#x at %d, the volume held %#x then", u.Offset, u.Length, u.Data[at], int(u.Offset)+at, model[int(u.Offset)+at])
				}
			}
		}
		releaseAll(side, us)
	}
	var bg sync.WaitGroup
	bg.Go(func() {
		for ctx.Err() == nil {
			time.Sleep(500 * time.Microsecond)
			drain()
		}
	})
	// Readers read buffered, reading ahead into large folios across
	// every writer's range while the writes go on.
	for r := range 2 {
		bg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 99))
			b := make([]byte, 2<<20)
			for ctx.Err() == nil {
				n := int64(4096 << rng.IntN(10))
				off := rng.Int64N(size-n+1) &^ 511
				if err := v.ReadAt(b[:n], off); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			base := int64(w) * home
			mine := make([]byte, home) // what this writer's range holds
			junk := make([]byte, shared)
			seq := 0
			fill := func(b []byte) {
				seq++
				for i := range b {
					b[i] = byte(w*61 + seq*7 + i/4096)
				}
				b[0] = byte(seq)
			}
			check := func(what string, off, n int64) bool {
				got := make([]byte, n)
				if err := v.ReadAt(got, base+off); err != nil {
					t.Error(err)
					return false
				}
				if !bytes.Equal(got, mine[off:off+n]) {
					at := firstDiff(got, mine[off:off+n])
					t.Errorf("writer %d, after %s: read [%d, +%d) has %#x at %d, want %#x (the page cache held an old copy)", w, what, base+off, n, got[at], base+off+int64(at), mine[off+int64(at)])
					return false
				}
				return true
			}
			for range rounds {
				var what string
				var off, n int64
				// The range written: the writer's own, or now and
				// then the shared one, where mine tracks nothing.
				at, span, own := base, int64(home), rng.IntN(10) >= 3
				track := mine
				if !own {
					at, span, track = writers*home, shared, junk
				}
				switch op := rng.IntN(10); {
				case op < 4:
					// Large, aligned, often at the range's edges: in a
					// folio shared with the neighbour's writes.
					n = int64(1+rng.IntN(2)) << 20
					switch rng.IntN(3) {
					case 0:
						off = 0
					case 1:
						off = span - n
					default:
						off = rng.Int64N(span-n+1) &^ 4095
					}
					b := ss.NewPayload(int(n))
					fill(b)
					copy(track[off:], b)
					what = "a large write"
					if err := ss.WriteOwned(ctx, "v0", b, at+off); err != nil {
						t.Error(err)
						return
					}
				case op < 8:
					// Small, aligned or not, inside or astride what a
					// large write wrote.
					n = 512 + rng.Int64N(64<<10)
					off = rng.Int64N(span - n + 1)
					if rng.IntN(2) == 0 {
						off &^= 4095
						n = (n + 4095) &^ 4095
						off = min(off, span-n)
					}
					b := make([]byte, n)
					fill(b)
					copy(track[off:], b)
					what = "a small write"
					if err := ss.Write(ctx, "v0", b, at+off); err != nil {
						t.Error(err)
						return
					}
				case op < 9:
					n = 4096 + rng.Int64N(2<<20)
					off = rng.Int64N(span - n + 1)
					what = "a copy"
					if err := ss.Copy(ctx, "v0", at+off, n); err != nil {
						t.Error(err)
						return
					}
				default:
					n = int64(4096 * (1 + rng.IntN(64)))
					off = rng.Int64N(span-n+1) &^ 4095
					clear(track[off : off+n])
					what = "a trim"
					if err := ss.Trim(ctx, "v0", at+off, n); err != nil {
						t.Error(err)
						return
					}
				}
				// The range written, and now and then the folio-sized
				// stretch around it (every time, and the writers
				// seldom have large writes on their way at once).
				if !own {
					continue
				}
				if !check(what, off, n) {
					return
				}
				if rng.IntN(4) != 0 {
					continue
				}
				lo := max(off-2<<20, 0) &^ (2<<20 - 1)
				hi := min((off+n+2<<20-1)&^(2<<20-1), home)
				if !check(what+" (around it)", lo, hi-lo) {
					return
				}
			}
			if !check("all its writes", 0, home) {
				return
			}
		})
	}
	wg.Wait()
	cancel()
	bg.Wait()
	drain()
	if t.Failed() {
		return
	}
	cached := make([]byte, size)
	if err := v.ReadAt(cached, 0); err != nil {
		t.Fatal(err)
	}
	onDisk := make([]byte, size)
	if err := v.ReadThrough(onDisk, 0); err != nil {
		t.Fatal(err)
	}
	if at := firstDiff(cached, model); at >= 0 {
		t.Errorf("the volume read through the page cache has %#x at %d, the replayed sidefile %#x", cached[at], at, model[at])
	}
	if at := firstDiff(onDisk, model); at >= 0 {
		t.Errorf("the volume read past the page cache has %#x at %d, the replayed sidefile %#x", onDisk[at], at, model[at])
	}
	if fw := ss.FailedWrites(); len(fw) > 0 {
		t.Errorf("failed writes: %v", fw)
	}
	st := side.Stats()
	t.Logf("%d rounds; sidefile paced %d writes", rounds, st.Paced)
}
