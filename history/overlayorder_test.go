package history

import (
	"math/rand"
	"strconv"
	"syscall"
	"testing"
	"time"
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

// BenchmarkOverlayUnder: what a view of a past point kept of the groups
// applied while it opened (k images, half of them over blocks the undo
// holds too) laid under the undo (n images): the applier waits for it (the
// views' lock), so it must cost per image kept, not per image held.
func BenchmarkOverlayUnder(b *testing.B) {
	const n = 100_000
	undo := outOfOrder(n, false)
	for _, k := range []int{1_000, 25_000} {
		b.Run(strconv.Itoa(k), func(b *testing.B) {
			b.ReportAllocs()
			kept := outOfOrder(k, false)
			for i := range kept {
				// Odd ones between the undo's blocks, even ones over them.
				kept[i].Offset += uint64(i%2) * 4096
			}
			var cpu time.Duration
			for range b.N {
				b.StopTimer()
				var o, n Overlay
				for _, e := range undo {
					if err := o.add(e, false); err != nil {
						b.Fatal(err)
					}
				}
				for _, e := range kept {
					if err := n.Add(e); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				cpu0 := cpuTime()
				if err := o.Under(&n); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - cpu0
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(k), "ns/image")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(k), "cpu-ns/image")
		})
	}
}

// cpuTime is the process's CPU time, user and system: what a benchmark
// costs whatever the machine's load.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
