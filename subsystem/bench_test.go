package subsystem

import (
	"context"
	"path/filepath"
	"testing"

	"duplex/actlog"
	"duplex/recordset"
	"duplex/sidefile"
)

// BenchmarkWrite measures the capture path of a 4 KiB write: stamp, sidefile,
// in-flight ordering and the write to the volume's page cache. Its allocs/op
// are what each user write costs the garbage collector; the update's own copy
// of the data, which the sidefile holds until the secondary has it, comes
// from the buffers the mover hands back (Recycle) after the acknowledgement.
func BenchmarkWrite(b *testing.B) {
	benchWrites(b, newFixture(b, 64<<20), func(recordset.Update) {})
}

// BenchmarkWriteLogged is BenchmarkWrite with the activity log on, every
// region already marked: a write's cost in the log is then its mark, its
// return from the volume and its acknowledgement (Done), no log write.
func BenchmarkWriteLogged(b *testing.B) {
	f := newFixture(b, 64<<20)
	al, _, err := actlog.Open(filepath.Join(b.TempDir(), "activity.log"), map[string]int64{"v0": volSize}, actlog.DefaultRegion)
	if err != nil {
		b.Fatal(err)
	}
	defer al.Close()
	f.ss.SetActivityLog(actlog.WritePath{Log: al})
	benchWrites(b, f, func(u recordset.Update) { al.Done(u.Volume, int64(u.Offset), int64(u.Length)) })
}

// benchWrites writes 4 KiB over f's volume v0, with acked run for each
// update the secondary acknowledges.
func benchWrites(b *testing.B, f *fixture, acked func(recordset.Update)) {
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
				acked(u)
			}
			f.side.Release(cost)
			f.ss.Recycle(ups)
		}
	}
}
