package subsystem

import (
	"context"
	"path/filepath"
	"testing"

	"duplex/actlog"
	"duplex/sidefile"
)

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
	data := make([]byte, 4096)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := f.ss.Write(ctx, "v0", data, int64(i%(volSize/4096))*4096); err != nil {
			b.Fatal(err)
		}
		if i%256 == 255 {
			ups, _, _ := f.ss.Drain()
			var cost int64
			for _, u := range ups {
				cost += sidefile.Cost(len(u.Data))
				al.Done(u.Volume, int64(u.Offset), int64(u.Length))
			}
			f.side.Release(cost)
			f.ss.Recycle(ups)
		}
	}
}
