package apply

import (
	"math/rand/v2"
	"testing"

	"duplex/consistency"
	"duplex/recordset"
)

// nullVector is a VectorWriter that writes nothing: what applying a group
// costs besides the volume's own writes.
type nullVector struct{}

func (nullVector) WriteAt(p []byte, off int64) error       { return nil }
func (nullVector) WriteVAt(bufs [][]byte, off int64) error { return nil }
func (nullVector) WriteZeroes(off, length int64) error     { return nil }
func (nullVector) Trim(off, length int64) error            { return nil }
func (nullVector) Flush() error                            { return nil }

// BenchmarkUpdates4KiBRandom applies groups of 1,000 random 4 KiB writes
// to one volume, the whole system's randwrite 4k QD16 at 50k IOPS and a
// 20 ms interval, to a target that writes nothing: the CPU per update of
// apply's own work (the check, fold, the runs).
func BenchmarkUpdates4KiBRandom(b *testing.B) {
	const n = 1000
	data := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	g := &consistency.Group{Number: 1}
	for i := range n {
		off := rng.Uint64N(1<<30/4096) * 4096
		g.Updates = append(g.Updates, recordset.Update{Volume: "v001", Kind: recordset.KindWrite, Offset: off, Length: 4096, Timestamp: int64(i + 1), Seq: uint64(i + 1), Data: data})
	}
	vols := map[string]Target{"v001": nullVector{}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := Updates(g, vols); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/update")
}
