package journal

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"duplex/crc32c"
)

// BenchmarkAppendSyncGroup4KiB journals what the secondary journals for
// 4 KiB random writes: a group of 800 updates (64 for a secondary behind a slow primary), each a 4 KiB piece where it
// arrived plus a small header of its own, appended in pieces and synced,
// with the segments released as the applier would. It reports the
// process's CPU per 4 KiB written, direct against buffered.
func BenchmarkAppendSyncGroup4KiB(b *testing.B) {
	for _, mode := range []struct {
		name     string
		buffered bool
		writes   int
	}{{"direct", false, 800}, {"buffered", true, 800}, {"direct-64", false, 64}, {"buffered-64", true, 64}} {
		b.Run(mode.name, func(b *testing.B) {
			writes := mode.writes
			j := openT(b, b.TempDir(), Options{SegmentSize: 16 << 20, Buffered: mode.buffered})
			defer j.Close()
			frames := make([]byte, writes*(4096+40))
			rng := rand.New(rand.NewPCG(1, 2))
			for k := range frames {
				frames[k] = byte(rng.Uint32())
			}
			parts := make([][]byte, 0, 2*writes)
			for k := range writes {
				f := frames[k*(4096+40):]
				parts = append(parts, f[:40], f[40:40+4096])
			}
			var sum uint32
			n := 0
			for _, p := range parts {
				sum = crc32c.Combine(sum, crc32c.Checksum(p), int64(len(p)))
				n += len(p)
			}
			b.SetBytes(int64(n))
			start := cpuTime()
			var i uint64
			for b.Loop() {
				i++
				if err := j.AppendParts(i, parts, sum); err != nil {
					b.Fatal(err)
				}
				if err := j.Sync(); err != nil {
					b.Fatal(err)
				}
				if i%8 == 0 {
					if err := j.Release(i); err != nil {
						b.Fatal(err)
					}
				}
			}
			cpu := cpuTime() - start
			b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N*writes), "cpu-µs/write")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
