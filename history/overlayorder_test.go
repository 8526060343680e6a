package history

import (
	"math/rand"
	"strconv"
	"testing"
)

// outOfOrder is n disjoint, never adjacent 4 KiB images in a random order,
// as a file system spreading writes over a volume makes them.
func outOfOrder(n int, zeros bool) []Extent {
	rng := rand.New(rand.NewSource(1))
	es := make([]Extent, n)
	for i, b := range rng.Perm(n) {
		es[i] = Extent{Volume: "v", Offset: 2 * uint64(b) * 4096, Length: 4096, Zeros: zeros}
		if !zeros {
			es[i].Data = make([]byte, 4096)
		}
	}
	return es
}

// TestOverlayAddsOutOfOrderCheaply: a view open while a file system writes
// all over a volume takes one image per block written, in no order; each
// one taken must not move every image held after it, or a view that holds
// a million images makes each group applied move millions of them while
// the secondary applies nothing else. Counted in segments moved, so the
// machine's load does not matter.
func TestOverlayAddsOutOfOrderCheaply(t *testing.T) {
	const n = 20_000
	var o Overlay
	for _, e := range outOfOrder(n, true) {
		if err := addImage(&o, e); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d images added out of order: %d segments moved", n, o.moved)
	if o.moved > 256*n {
		t.Fatalf("%d images added out of order moved %d segments, %d per image: insertion grows with what the overlay holds",
			n, o.moved, o.moved/n)
	}
}

// BenchmarkOverlayAdd: images added in order and out of order, to an
// overlay of n.
func BenchmarkOverlayAdd(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		for _, order := range []string{"inorder", "random"} {
			es := outOfOrder(n, false)
			if order == "inorder" {
				for i := range es {
					es[i].Offset = 2 * uint64(i) * 4096
				}
			}
			b.Run(order+"/"+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					var o Overlay
					for _, e := range es {
						if err := addImage(&o, e); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/image")
			})
		}
	}
}
