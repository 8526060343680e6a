package transport

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/workload"
)

// benchWrites is a record set's worth of writes: 256 of 4 KiB, 1 MiB.
const benchWrites = 256

// benchData returns the data of benchWrites writes of 4 KiB of one kind.
func benchData(b *testing.B, kind string) [][]byte {
	rng := rand.New(rand.NewPCG(7, 11))
	out := make([][]byte, benchWrites)
	switch kind {
	case "pages":
		// Database-like pages: a header, a slot array, rows of short text
		// and numbers packed from the end, free space zero in between.
		names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"}
		cities := []string{"Lisbon", "Oslo", "Quito", "Perth", "Dakar", "Hanoi", "Lima", "Riga"}
		for i := range out {
			p := make([]byte, 4096)
			binary.LittleEndian.PutUint64(p, rng.Uint64()) // LSN
			binary.LittleEndian.PutUint32(p[8:], uint32(i))
			end, slot := len(p), 24
			for k := 0; ; k++ {
				row := fmt.Sprintf("%08d|%s|%s@example.com|%s|%d.%02d|2026-%02d-%02d|active",
					i*64+k, names[rng.IntN(len(names))], names[rng.IntN(len(names))], cities[rng.IntN(len(cities))],
					rng.IntN(100000), rng.IntN(100), 1+rng.IntN(12), 1+rng.IntN(28))
				if end-len(row) < slot+2+1024 { // leave free space, as pages do
					break
				}
				end -= len(row)
				copy(p[end:], row)
				binary.LittleEndian.PutUint16(p[slot:], uint16(end))
				slot += 2
			}
			out[i] = p
		}
	case "text":
		// Source text from the Go tree: prose and code.
		var text []byte
		for _, f := range []string{"net/http/server.go", "runtime/proc.go", "fmt/doc.go"} {
			t, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "src", f))
			if err != nil {
				b.Skipf("no text to compress: %v", err)
			}
			text = append(text, t...)
		}
		for i := range out {
			off := (i * 4096) % (len(text) - 4096)
			out[i] = text[off : off+4096]
		}
	case "workload":
		// The blocks the end-to-end tests write.
		for i := range out {
			p := make([]byte, workload.BlockSize)
			workload.Encode(p, workload.Block{Ref: workload.Ref{Client: uint32(i % 4), Counter: uint64(i + 1), Volume: 1, Block: uint32(i)}})
			out[i] = p
		}
	case "random":
		for i := range out {
			p := make([]byte, 4096)
			for j := 0; j < len(p); j += 8 {
				binary.LittleEndian.PutUint64(p[j:], rng.Uint64())
			}
			out[i] = p
		}
	default:
		b.Fatalf("no data %q", kind)
	}
	return out
}

// benchSet returns the plain encoding of a record set of writes.
func benchSet(b *testing.B, writes [][]byte) []byte {
	rs := &recordset.RecordSet{Session: "bench", Subsystem: "ss1", Seq: 1, Group: 1, ReadTime: 1, Horizon: int64(len(writes)) + 1}
	for i, w := range writes {
		rs.Updates = append(rs.Updates, recordset.Update{Volume: "db", Kind: recordset.KindWrite, Offset: uint64(i) * 4096,
			Length: uint64(len(w)), Timestamp: int64(i) + 1, Seq: uint64(i) + 1, Data: w})
	}
	set, err := recordset.Encode(nil, rs)
	if err != nil {
		b.Fatal(err)
	}
	return set
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per MiB of plain record sets:
// unlike wall time, it does not grow when other work shares the CPUs.
func reportCPU(b *testing.B, cpu time.Duration, plain int) {
	b.ReportMetric(float64(cpu.Microseconds())/1000/(float64(plain)*float64(b.N)/(1<<20)), "cpu-ms/MiB")
}

var benchKinds = []string{"pages", "text", "workload", "random"}

// BenchmarkCompress compresses one record set of 1 MiB (256 writes of
// 4 KiB) per op, at the zstd levels of the library's four speeds.
// MB/s is of the plain set; ratio is plain over link bytes.
func BenchmarkCompress(b *testing.B) {
	for _, kind := range benchKinds {
		for _, level := range []int{1, 3, 7, 11} {
			// One for all runs, as the mover keeps one: its tables and
			// window are allocated once.
			c, err := NewCompressor(level)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/level=%d", kind, level), func(b *testing.B) {
				set := benchSet(b, benchData(b, kind))
				var link []byte
				b.SetBytes(int64(len(set)))
				b.ReportAllocs()
				cpu0 := cpuNow()
				b.ResetTimer()
				for range b.N {
					link = c.Compress(link[:0], set)
				}
				b.StopTimer()
				reportCPU(b, cpuNow()-cpu0, len(set))
				b.ReportMetric(float64(len(set))/float64(len(link)), "ratio")
			})
		}
	}
}

// BenchmarkExpand decodes what BenchmarkCompress made at the default
// level, as the secondary does for each record set received.
func BenchmarkExpand(b *testing.B) {
	c, err := NewCompressor(DefaultZstdLevel)
	if err != nil {
		b.Fatal(err)
	}
	d, err := NewDecompressor(64 << 20)
	if err != nil {
		b.Fatal(err)
	}
	for _, kind := range benchKinds {
		b.Run(kind, func(b *testing.B) {
			set := benchSet(b, benchData(b, kind))
			link := c.Compress(nil, set)
			b.SetBytes(int64(len(set)))
			b.ReportAllocs()
			cpu0 := cpuNow()
			b.ResetTimer()
			for range b.N {
				if _, err := d.Expand(link); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportCPU(b, cpuNow()-cpu0, len(set))
			b.ReportMetric(float64(len(set))/float64(len(link)), "ratio")
		})
	}
}
