package e2e

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"duplex/transport"
	"duplex/workload"
)

// BenchmarkReplicationCompress is BenchmarkReplication with the link plain
// or compressed (zstd, default level), on compressible data (the
// workload's blocks, about tenfold) or random data: 4 writers of 64 KiB
// over 2 subsystems × 2 volumes, both sites in this process. It reports
// the process's CPU time per MiB written (both sites: capture, encode,
// compress, decode, journal, apply), which the machine's load does not
// inflate as it does wall time, and the link's ratio (plain record-set
// bytes over what they took on the link).
func BenchmarkReplicationCompress(b *testing.B) {
	for _, data := range []string{"workload", "random"} {
		for _, compress := range []bool{false, true} {
			name := data + "/none"
			if compress {
				name = data + "/zstd"
			}
			b.Run(name, func(b *testing.B) { benchReplicationCompress(b, data, compress) })
		}
	}
}

func benchReplicationCompress(b *testing.B, data string, compress bool) {
	const blocks = 16384 // 64 MiB volumes
	const size = 64 << 10
	dir := b.TempDir()
	net := transport.NewMemNetwork(1, transport.Faults{})
	sec := startSecondary(b, dir, net, secondaryOpts{blocks: blocks})
	p := startPrimary(b, dir, primaryOpts{interval: 20 * time.Millisecond, blocks: blocks, sidefile: 64 << 20, dialer: net, compress: compress})
	// Distinct data in every write of a record set (256 buffers of 64 KiB
	// per writer, 16 MiB, twice zstd's window), so that the ratio is the
	// data's own, not that of one write repeated.
	const distinct = 256
	bufs := make([][][]byte, 4)
	rng := rand.New(rand.NewPCG(5, 6))
	for w := range bufs {
		bufs[w] = make([][]byte, distinct)
		for k := range bufs[w] {
			buf := make([]byte, size)
			for i := 0; i < size; i += workload.BlockSize {
				blk := buf[i : i+workload.BlockSize]
				if data == "random" {
					for j := 0; j < len(blk); j += 8 {
						binary.LittleEndian.PutUint64(blk[j:], rng.Uint64())
					}
				} else {
					workload.Encode(blk, workload.Block{Ref: workload.Ref{Client: uint32(w), Counter: uint64(k*size + i + 1), Volume: uint32(w), Block: uint32(i / workload.BlockSize)}})
				}
			}
			bufs[w][k] = buf
		}
	}
	b.SetBytes(size)
	ctx := context.Background()
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= b.N {
					return
				}
				off := int64((i*size/4096)%(blocks-size/4096)) * 4096
				if err := p.WriteAt(ctx, w, bufs[w][i%distinct], off); err != nil {
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
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/1000/(float64(b.N)*size/(1<<20)), "cpu-ms/MiB")
	if ms := p.mover.Stats(); ms.RecordSetWireBytes > 0 {
		b.ReportMetric(float64(ms.RecordSetBytes)/float64(ms.RecordSetWireBytes), "ratio")
		// Above 1 only by headers and resends: every set compressed once.
		b.ReportMetric(float64(ms.RecordSetBytes)/(float64(b.N)*size), "sent/written")
	}
}
