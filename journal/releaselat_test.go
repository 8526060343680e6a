package journal

import (
	"os"
	"slices"
	"testing"
	"time"
)

// BenchmarkAppendSyncDuringRelease: the time of an Append of 1 MiB and its
// Sync begun while a Release removes a 64 MiB segment (and the Release's
// own, from then), on the file system of
// DUPLEX_RELEASE_DIR (the secondary's: ext4 mounted with discard frees a
// segment's blocks as it removes it).
func BenchmarkAppendSyncDuringRelease(b *testing.B) {
	base := releaseDir(b)
	data := make([]byte, 1<<20)
	var lat, rel []time.Duration
	for i := 0; i < b.N; i++ {
		dir, err := os.MkdirTemp(base, "rel")
		if err != nil {
			b.Fatal(err)
		}
		j, err := Open(dir, Options{SegmentSize: 64 << 20})
		if err != nil {
			b.Fatal(err)
		}
		idx := uint64(1)
		for ; idx <= 70; idx++ {
			if err := j.Append(idx, data); err != nil {
				b.Fatal(err)
			}
		}
		if err := j.Sync(); err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- j.Release(idx - 1) }()
		time.Sleep(time.Millisecond)
		t0 := time.Now()
		if err := j.Append(idx, data); err != nil {
			b.Fatal(err)
		}
		if err := j.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		rel = append(rel, time.Since(t0))
		j.Close()
		os.RemoveAll(dir)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	slices.Sort(rel)
	b.ReportMetric(float64(rel[len(rel)/2].Microseconds())/1000, "release-p50-ms")
}

// releaseDir is DUPLEX_RELEASE_DIR, the directory on the file system the
// release benchmarks measure; they skip without it.
func releaseDir(b *testing.B) string {
	dir := os.Getenv("DUPLEX_RELEASE_DIR")
	if dir == "" {
		b.Skip("DUPLEX_RELEASE_DIR not set")
	}
	return dir
}
