package subsystem

import (
	"context"
	"testing"

	"duplex/sidefile"
)

// BenchmarkWrite measures the capture path of a 4 KiB write: stamp, sidefile,
// in-flight ordering and the write to the volume's page cache. Its allocs/op
// are what each user write costs the garbage collector; the update's own copy
// of the data, which the sidefile holds until the secondary has it, comes
// from the buffers the mover hands back (Recycle) after the acknowledgement.
func BenchmarkWrite(b *testing.B) {
	f := newFixture(b, 64<<20)
	data := make([]byte, 4096)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := f.ss.Write(ctx, "v0", data, int64(i%(volSize/4096))*4096); err != nil {
			b.Fatal(err)
		}
		if i%256 == 255 {
			// As the mover does each interval, and the secondary's
			// acknowledgement after it.
			ups, _, _ := f.ss.Drain()
			var cost int64
			for _, u := range ups {
				cost += sidefile.Cost(len(u.Data))
			}
			f.side.Release(cost)
			f.ss.Recycle(ups)
		}
	}
}
