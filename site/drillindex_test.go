package site

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"duplex/config"
	"duplex/control"
)

// TestDrillIndexIsBounded: a drill's index in memory of its writes counts,
// with its view's index of the before images, against the memory one read
// view may hold (MaxViewBytes, here 16 KiB), where the scratch file has
// room for every write: a drill writing all over its volumes gets ENOSPC
// once the index could pass it, the status says why, and every read still
// returns the drill's group with exactly the writes that succeeded.
func TestDrillIndexIsBounded(t *testing.T) {
	const bound = 16 << 10
	cfg := linkConfig(t)
	cfg.Secondary.DrillNBD = "127.0.0.1:0"
	cfg.Secondary.DrillBytes = config.Size(64 << 20)
	s := startSecondary(t, cfg, SecondaryOptions{MaxViewBytes: bound})
	if _, err := s.Drill(control.DrillRequest{}); err != nil {
		t.Fatal(err)
	}
	defer s.Drill(control.DrillRequest{Stop: true})
	// A write of no bytes inside a block takes none.
	x1, _ := drillExports{s: s, d: s.drills.d}.Lookup(s.order[0])
	if err := x1.WriteAt(nil, 100); err != nil {
		t.Fatal(err)
	}
	if st := s.Status().Drill; st.ScratchBytes != 0 {
		t.Fatalf("a drill write of no bytes took %d bytes of its scratch file", st.ScratchBytes)
	}
	type block struct {
		vol string
		n   int64
	}
	var blocks []block
	for _, vol := range s.order {
		for n := int64(0); n < (1<<20)/drillBlock; n += 2 {
			blocks = append(blocks, block{vol, n})
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(blocks), func(i, j int) { blocks[i], blocks[j] = blocks[j], blocks[i] })
	content := func(b block) []byte { return bytes.Repeat([]byte{byte(b.n%250 + 1)}, drillBlock) }
	written := map[block]bool{}
	var werr error
	for _, b := range blocks {
		x, _ := drillExports{s: s, d: s.drills.d}.Lookup(b.vol)
		if werr = x.WriteAt(content(b), b.n*drillBlock); werr != nil {
			break
		}
		written[b] = true
	}
	if !errors.Is(werr, syscall.ENOSPC) || !strings.Contains(werr.Error(), "memory") {
		t.Fatalf("%d of %d disjoint 4 KiB drill writes, then: %v; want ENOSPC once the index in memory could pass %d KiB",
			len(written), len(blocks), werr, bound>>10)
	}
	if len(written) == 0 {
		t.Fatal("no drill write fit")
	}
	if st := s.Status().Drill; st == nil || !strings.Contains(st.Failed, "memory") || st.IndexBytes == 0 || st.IndexBytes > bound {
		t.Fatalf("status after a drill write refused for its index: %+v; want why, and the index within %d bytes", st, bound)
	}
	if n := s.drills.d.indexBytes(); n > bound {
		t.Errorf("the drill's index holds %d bytes, past the %d it may", n, bound)
	}
	for _, vol := range s.order {
		x, _ := drillExports{s: s, d: s.drills.d}.Lookup(vol)
		got := make([]byte, 1<<20)
		if err := x.ReadAt(got, 0); err != nil {
			t.Fatalf("drill %s after ENOSPC: %v", vol, err)
		}
		for n := int64(0); n < (1<<20)/drillBlock; n++ {
			want := make([]byte, drillBlock)
			if b := (block{vol, n}); written[b] {
				want = content(b)
			}
			if !bytes.Equal(got[n*drillBlock:(n+1)*drillBlock], want) {
				t.Fatalf("drill %s block %d: not what the drill wrote, or the group it shows", vol, n)
			}
		}
	}
}

// BenchmarkDrillIndex measures the memory a failover drill's index of its
// writes takes per 4 KiB block written, with the heap in use after a
// collection before and after: every other block of a 64 MiB volume
// written once in random order (no two writes adjacent, none merge), or
// every block in order (as a file system writes a file). It reports the
// heap grown per block written and, as the drill counts it, the index's
// bytes per block.
func BenchmarkDrillIndex(b *testing.B) {
	const volSize = 64 << 20
	cfg := config.Demo(b.TempDir())
	cfg.ControlTokenFile = ""
	cfg.Primary.NBD, cfg.Primary.Control = "", ""
	cfg.Secondary.NBD, cfg.Secondary.Control = "", ""
	cfg.Secondary.Listen = "127.0.0.1:0"
	cfg.Secondary.DrillNBD = "127.0.0.1:0"
	cfg.Secondary.DrillBytes = config.Size(volSize)
	for i := range cfg.Primary.Subsystems {
		for j := range cfg.Primary.Subsystems[i].Volumes {
			cfg.Primary.Subsystems[i].Volumes[j].Size = config.Size(volSize)
		}
	}
	s := startSecondary(b, cfg, SecondaryOptions{})
	for _, order := range []string{"random-disjoint", "in-order"} {
		b.Run(order, func(b *testing.B) {
			var blocks []int
			if order == "in-order" {
				for n := range volSize / drillBlock / 2 {
					blocks = append(blocks, n)
				}
			} else {
				for _, n := range rand.Perm(volSize / drillBlock / 2) {
					blocks = append(blocks, 2*n)
				}
			}
			var perBlock, counted float64
			for range b.N {
				if _, err := s.Drill(control.DrillRequest{}); err != nil {
					b.Fatal(err)
				}
				x, _ := drillExports{s: s, d: s.drills.d}.Lookup("vol1")
				p := make([]byte, drillBlock)
				heap0 := heapInUse()
				for _, blk := range blocks {
					if err := x.WriteAt(p, int64(blk)*drillBlock); err != nil {
						b.Fatal(err)
					}
				}
				perBlock += float64(heapInUse()-heap0) / float64(len(blocks))
				counted += float64(s.drills.d.indexBytes()) / float64(len(blocks))
				if _, err := s.Drill(control.DrillRequest{Stop: true}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perBlock/float64(b.N), "heap-B/block")
			b.ReportMetric(counted/float64(b.N), "counted-B/block")
			la, _ := os.ReadFile("/proc/loadavg")
			b.Logf("%d blocks of 4 KiB a run; load average %s", len(blocks), strings.TrimSpace(string(la)))
		})
	}
}

// startSecondary opens a secondary as opts say and runs it until the test
// ends.
func startSecondary(tb testing.TB, cfg *config.Config, opts SecondaryOptions) *Secondary {
	tb.Helper()
	s, err := OpenSecondary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), opts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	return s
}

// heapInUse is the heap in use after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}
