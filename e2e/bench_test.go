package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"duplex/transport"
)

// BenchmarkReplication measures in-process end-to-end replication: 4 writers
// of 64 KiB blocks over 2 subsystems × 2 volumes, through the in-memory link,
// journaled and applied at the secondary. It reports MB/s (b.SetBytes) and
// consistency groups applied per second.
func BenchmarkReplication(b *testing.B) {
	const blocks = 16384 // 64 MiB volumes
	dir := b.TempDir()
	net := transport.NewMemNetwork(1, transport.Faults{})
	sec := startSecondary(b, dir, net, secondaryOpts{blocks: blocks})
	p := startPrimary(b, dir, primaryOpts{interval: 20 * time.Millisecond, blocks: blocks, sidefile: 64 << 20, dialer: net})
	size := 64 << 10
	if s := os.Getenv("DUPLEX_BENCH_WRITE"); s != "" {
		fmt.Sscan(s, &size)
	}
	b.SetBytes(int64(size))
	ctx := context.Background()
	start := sec.sec.Stats().GroupsApplied
	b.ResetTimer()
	t0 := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, size)
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= b.N {
					return
				}
				off := int64((i*size/4096)%(blocks-size/4096)) * 4096
				if err := p.WriteAt(ctx, w, buf, off); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := p.mover.Quiesce(qctx); err != nil {
		b.Fatal(err)
	}
	for sec.sec.Stats().Group < p.mover.Stats().Acked.Group {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	groups := sec.sec.Stats().GroupsApplied - start
	b.ReportMetric(float64(groups)/time.Since(t0).Seconds(), "groups/s")
}
