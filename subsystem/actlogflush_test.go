package subsystem

import (
	"bytes"
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"duplex/actlog"
)

// TestARegionStaysMarkedWhileItsWriteIsOnItsWayToTheVolume: a write is
// captured and the secondary acknowledges it (the mover ships from the
// sidefile) while its pwrite has not reached the volume yet (held up: a
// stalled disk, an earlier overlapping write). The activity log's Clean
// flushes the volume then, which cannot cover a write not yet written, so
// the region must stay marked until the write is on the volume and a
// later flush covers it.
func TestARegionStaysMarkedWhileItsWriteIsOnItsWayToTheVolume(t *testing.T) {
	defer func(d time.Duration) { actlog.Idle = d }(actlog.Idle)
	actlog.Idle = 0
	f := newFixture(t, 1<<20)
	al, _, err := actlog.Open(filepath.Join(t.TempDir(), "activity.log"), map[string]int64{"v0": volSize}, actlog.DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	var flushes atomic.Int32
	al.SetFlush(func(vol string) error {
		flushes.Add(1)
		return f.vols[vol].Flush()
	}, func(vol string, regions [][2]int64, err error) { t.Errorf("flush of %s failed: %v", vol, err) })
	f.ss.SetActivityLog(actlog.WritePath{Log: al})

	held, release := make(chan struct{}), make(chan struct{})
	f.ss.beforeVolumeWrite = func(string) {
		close(held)
		<-release
	}
	data := bytes.Repeat([]byte{0x5a}, 4096)
	written := make(chan error, 1)
	go func() { written <- f.ss.Write(context.Background(), "v0", data, 0) }()
	<-held
	ups, _, _ := f.ss.Drain()
	if len(ups) != 1 {
		t.Fatalf("drained %d updates, want the write", len(ups))
	}
	al.Done(ups[0].Volume, int64(ups[0].Offset), int64(ups[0].Length)) // the secondary's acknowledgement
	time.Sleep(time.Millisecond)                                       // idle for Idle = 0
	if err := al.Clean(); err != nil {
		t.Fatal(err)
	}
	if n := al.Marked(); n != 1 {
		t.Errorf("acknowledged, its pwrite not yet done, after a Clean (%d flushes): %d regions marked, want 1", flushes.Load(), n)
	}
	close(release)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	f.ss.beforeVolumeWrite = nil
	time.Sleep(time.Millisecond)
	before := flushes.Load()
	if err := al.Clean(); err != nil {
		t.Fatal(err)
	}
	if n := al.Marked(); n != 0 || flushes.Load() != before+1 {
		t.Errorf("written and acknowledged, after a Clean: %d regions marked, %d flushes, want 0 after one flush", n, flushes.Load()-before)
	}
}
