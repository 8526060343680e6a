package history

import (
	"runtime"
	"testing"
)

// An Overlay's Bytes is what a read view is bounded by (MaxViewBytes, and
// the budget of all views), and it counts only before images that hold
// data: an image of zeros (a write over a range never written, as a file
// system filling a new disk makes them) takes no Bytes but a segment of
// its own, never merged with its neighbours. A view left open while the
// primary writes into fresh space therefore grows without bound and is
// never given up: here 200,000 writes of 4 KiB into zeros leave Bytes at
// 0 with megabytes of heap held (about 1.4 % of the data written, so a
// TiB written while one connection stays open holds some 14 GiB).
func TestOverlayOfZerosCountsWhatItHolds(t *testing.T) {
	const n = 200_000
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	o := &Overlay{}
	for i := uint64(0); i < n; i++ {
		// Every other 4 KiB block, in order: disjoint, never adjacent.
		o.Add(Extent{Volume: "vol1", Offset: 2 * i * 4096, Length: 4096, Zeros: true})
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	held := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d zero images: Bytes %d, heap held %d KiB", n, o.Bytes(), held>>10)
	if held > o.Bytes()+1<<20 {
		t.Fatalf("the overlay holds %d KiB of heap for %d images of zeros and counts %d bytes of it: a view bounded by Bytes is not bounded",
			held>>10, n, o.Bytes())
	}
	runtime.KeepAlive(o)
}
