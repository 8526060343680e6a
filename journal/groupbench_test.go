package journal

import (
	"math"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"duplex/crc32c"
	"duplex/disk"
)

// BenchmarkAppendSyncGroup4KiB journals what the secondary journals for
// 4 KiB random writes: a group of 800 updates (64 for a secondary behind a slow primary), each a 4 KiB piece where it
// arrived plus a small header of its own, appended in pieces and synced,
// with the segments released as the applier would. It reports the
// process's CPU per 4 KiB written, direct against buffered, and direct
// with every byte copied into the journal's buffer (-copy) against direct
// with the updates written from where they lie. 4 KiB parts are copied
// (inPlaceMin); -inplace writes them in place all the same, lying in their
// frame at any offset (a 40-byte header before each, as in a record set)
// or, -inplace-aligned, each on a 512-byte boundary of its frame, as a
// frame laid out for it would put them: only then does the direct write
// take the whole part from where it lies, with nothing copied.
func BenchmarkAppendSyncGroup4KiB(b *testing.B) {
	for _, mode := range []struct {
		name     string
		buffered bool
		writes   int
		copy     bool
		inPlace  bool
		stride   int // from one update's header to the next's
	}{{"direct", false, 800, false, false, 4096 + 40}, {"direct-copy", false, 800, true, false, 4096 + 40},
		{"direct-inplace", false, 800, false, true, 4096 + 40}, {"direct-inplace-aligned", false, 800, false, true, 4096 + 512},
		{"buffered", true, 800, false, false, 4096 + 40},
		{"direct-64", false, 64, false, false, 4096 + 40}, {"direct-64-copy", false, 64, true, false, 4096 + 40}, {"buffered-64", true, 64, false, false, 4096 + 40}} {
		b.Run(mode.name, func(b *testing.B) {
			copyAll(b, mode.copy)
			if mode.inPlace {
				old := inPlaceMin
				inPlaceMin = 4096
				b.Cleanup(func() { inPlaceMin = old })
			}
			writes := mode.writes
			j := openT(b, b.TempDir(), Options{SegmentSize: 16 << 20, Buffered: mode.buffered})
			defer j.Close()
			stride := mode.stride
			// Aligned like the heap's large objects, so that an update
			// placed at stride-4096 from a 512-byte boundary lies on one.
			frames := disk.DirectBuffer(writes * stride)
			rng := rand.New(rand.NewPCG(1, 2))
			for k := range frames {
				frames[k] = byte(rng.Uint32())
			}
			parts := make([][]byte, 0, 2*writes)
			hdr := stride - 4096
			for k := range writes {
				f := frames[k*stride:]
				parts = append(parts, f[hdr-40:hdr], f[hdr:hdr+4096])
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

// copyAll makes direct writes copy every byte, as before records had gaps,
// for the rest of b.
func copyAll(b *testing.B, on bool) {
	if !on {
		return
	}
	old := inPlaceMin
	inPlaceMin = math.MaxInt
	b.Cleanup(func() { inPlaceMin = old })
}

// BenchmarkAppendSyncGroup1MiB journals what the secondary journals for
// sustained 1 MiB writes: a group of 4 updates, each 1 MiB where it arrived
// in a frame (Go's heap, small pages, at any offset) plus a small header,
// appended in pieces and synced, the segments released as the applier
// would. It reports the process's CPU per MiB journaled, the updates
// written from where they lie against copied into the journal's buffer,
// and from a frame of huge pages (-huge).
func BenchmarkAppendSyncGroup1MiB(b *testing.B) {
	for _, mode := range []struct {
		name string
		copy bool
		huge bool
	}{{"in-place", false, false}, {"copy", true, false}, {"in-place-huge", false, true}} {
		b.Run(mode.name, func(b *testing.B) {
			copyAll(b, mode.copy)
			j := openT(b, b.TempDir(), Options{SegmentSize: 64 << 20})
			defer j.Close()
			const writes, size, hdr = 4, 1 << 20, 61
			frame := make([]byte, writes*(size+hdr)+100)
			if mode.huge {
				frame = disk.DirectBuffer(8 << 20)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for k := range frame {
				frame[k] = byte(rng.Uint32())
			}
			var parts [][]byte
			for k := range writes {
				f := frame[37+k*(size+hdr):]
				parts = append(parts, f[:hdr], f[hdr:hdr+size])
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
			b.ReportMetric(float64(cpu.Nanoseconds())/1e6/(float64(b.N)*float64(n)/(1<<20)), "cpu-ms/MiB")
		})
	}
}
