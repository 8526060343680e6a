package history

import (
	"math"
	"math/rand"
	"runtime"
	"testing"
	"time"
)

// An Overlay in memory keeps an image taken whole as the slice it was
// given, and Overlays gives it slices of the history records it reads: one
// image of a few KiB taken from a record of a MiB keeps the whole record
// alive, though Bytes (what a view of a past time is bounded by, and the
// views' budget counts) counts the few KiB. Here each of 64 groups
// overwrites the same MiB, which only the first group's image is taken of,
// and one 4 KiB block of its own: Bytes is about 1.25 MiB, and the records
// of all 64 groups, 64 MiB, stay in the heap.
func TestOverlaysHoldWhatTheyCount(t *testing.T) {
	l, err := Open(t.TempDir(), Options{Window: time.Hour, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const size = 2 << 20
	v := &mem{make([]byte, size)}
	rand.New(rand.NewSource(1)).Read(v.b)
	srcs := map[string]Source{"v": v}
	for g := uint64(1); g <= 64; g++ {
		ranges := []Range{{"v", 0, 1 << 20}, {"v", 1<<20 + 4096*g, 4096}}
		if err := l.Capture(Header{Group: g, Time: int64(g)}, ranges, srcs); err != nil {
			t.Fatal(err)
		}
		v.b[0]++
		v.b[1<<20+4096*g]++
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	os, err := l.Overlays(Whole(0), Whole(math.MaxUint64), 1<<30, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	held := int64(after.HeapInuse) - int64(before.HeapInuse)
	counted := os["v"].Bytes()
	t.Logf("Overlays hold %d KiB of heap and count %d KiB", held>>10, counted>>10)
	if held > 2*counted+1<<20 {
		t.Fatalf("Overlays hold %d KiB of heap and count %d KiB of it: a view of a past time bounded by what it counts is not bounded", held>>10, counted>>10)
	}
	runtime.KeepAlive(os)
}
