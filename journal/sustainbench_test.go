package journal

import (
	"os"
	"slices"
	"testing"
	"time"
)

// BenchmarkSustainedAppendSync: the secondary's journal under sustained
// large writes, on the file system of DUPLEX_RELEASE_DIR: records of
// 4 MiB (a group of sustained 1 MiB writes), each appended and synced,
// 64 MiB segments, and a Release from another goroutine every 4 records
// of all but the last 8, as the checkpointer releases what was applied.
// Reports the journal's rate and the latency of an Append and its Sync.
func BenchmarkSustainedAppendSync(b *testing.B) {
	dir, err := os.MkdirTemp(releaseDir(b), "sustain")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	j, err := Open(dir, Options{SegmentSize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	data := make([]byte, 4<<20)
	for k := range data {
		data[k] = byte(k * 7)
	}
	release := make(chan uint64, 1)
	released := make(chan error, 1)
	go func() {
		var err error
		for through := range release {
			if err == nil {
				err = j.Release(through)
			}
		}
		released <- err
	}()
	lat := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := uint64(1); i <= uint64(b.N); i++ {
		t0 := time.Now()
		if err := j.Append(i, data); err != nil {
			b.Fatal(err)
		}
		if err := j.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		if i%4 == 0 && i > 8 {
			select {
			case release <- i - 8:
			default: // one under way
			}
		}
	}
	b.StopTimer()
	close(release)
	if err := <-released; err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
