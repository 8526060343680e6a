package subsystem

import (
	"context"
	"errors"
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
	benchWrites(b, newFixture(b, 64<<20), nil, func(recordset.Update) {})
}

// BenchmarkWriteLogged is BenchmarkWrite with the activity log on, every
// region already marked: a write's cost in the log is then its mark, its
// return from the volume and its acknowledgement (Done), no log write.
func BenchmarkWriteLogged(b *testing.B) {
	benchLogged(b, nil)
}

// BenchmarkWriteOwnedLogged is BenchmarkWriteLogged of WriteOwned, a
// worker's write of a payload the NBD server read into NewPayload's buffer.
func BenchmarkWriteOwnedLogged(b *testing.B) {
	benchLogged(b, func(f *fixture, off int64) error {
		return f.ss.WriteOwned(context.Background(), "v0", f.ss.NewPayload(4096), off)
	})
}

// BenchmarkWriteNowLogged is BenchmarkWriteOwnedLogged of WriteNow, the
// read loop's write of a payload Prompt promised.
func BenchmarkWriteNowLogged(b *testing.B) {
	benchLogged(b, func(f *fixture, off int64) error {
		wait, err := f.ss.WriteNow("v0", f.ss.NewPayload(4096), off)
		if wait {
			return errors.New("the write would wait")
		}
		return err
	})
}

func benchLogged(b *testing.B, write func(f *fixture, off int64) error) {
	f := newFixture(b, 64<<20)
	al, _, err := actlog.Open(filepath.Join(b.TempDir(), "activity.log"), map[string]int64{"v0": volSize}, actlog.DefaultRegion)
	if err != nil {
		b.Fatal(err)
	}
	defer al.Close()
	f.ss.SetActivityLog(actlog.WritePath{Log: al})
	if write != nil {
		// Every region marked on disk, as WriteNow needs.
		if err := al.Mark("v0", 0, volSize); err != nil {
			b.Fatal(err)
		}
	}
	benchWrites(b, f, write, func(u recordset.Update) { al.Done(u.Volume, int64(u.Offset), int64(u.Length)) })
}

// benchWrites writes 4 KiB over f's volume v0 (with write, if not nil),
// with acked run for each update the secondary acknowledges.
func benchWrites(b *testing.B, f *fixture, write func(f *fixture, off int64) error, acked func(recordset.Update)) {
	data := make([]byte, 4096)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		off := int64(i%(volSize/4096)) * 4096
		var err error
		if write != nil {
			err = write(f, off)
		} else {
			err = f.ss.Write(ctx, "v0", data, off)
		}
		if err != nil {
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
