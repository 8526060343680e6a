package actlog

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
)

// cachedVolume models a primary volume behind the page cache: a write is
// held in the cache until a flush makes it durable, and a power loss
// (crash) drops what the cache holds. A failing flush loses it too, as a
// writeback error does.
type cachedVolume struct {
	mu      sync.Mutex
	durable []byte
	cached  map[int64][]byte
	flushes int
	fail    error
}

func newCachedVolume(size int64) *cachedVolume {
	return &cachedVolume{durable: make([]byte, size), cached: map[int64][]byte{}}
}

func (v *cachedVolume) write(p []byte, off int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cached[off] = append([]byte(nil), p...)
}

func (v *cachedVolume) flush() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.flushes++
	if v.fail != nil {
		clear(v.cached)
		return v.fail
	}
	for off, p := range v.cached {
		copy(v.durable[off:], p)
	}
	clear(v.cached)
	return nil
}

func (v *cachedVolume) crash() {
	v.mu.Lock()
	defer v.mu.Unlock()
	clear(v.cached)
}

// TestARegionIsNotUnmarkedBeforeItsWriteIsDurable: a write is marked, written
// to the volume's page cache, and acknowledged by the secondary; the region
// goes idle and Clean runs. Then the power fails: the write never reached
// the volume's disk, while the secondary holds it. The log must still mark
// the region, or nothing copies it again.
func TestARegionIsNotUnmarkedBeforeItsWriteIsDurable(t *testing.T) {
	defer func(d time.Duration) { Idle = d }(Idle)
	Idle = 0
	path := filepath.Join(t.TempDir(), "actlog")
	vol := newCachedVolume(8 << 20)
	l, _, err := Open(path, map[string]int64{"a": 8 << 20}, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	l.SetFlush(func(name string) error { return vol.flush() }, func(string, [][2]int64, error) {})
	data := bytes.Repeat([]byte{0x5a}, 4096)
	if err := l.Mark("a", 3<<20, 4096); err != nil {
		t.Fatal(err)
	}
	vol.write(data, 3<<20)
	l.Wrote("a", 3<<20, 4096)
	l.Done("a", 3<<20, 4096)
	if err := l.Clean(); err != nil {
		t.Fatal(err)
	}
	vol.crash()
	marks, err := ReadMarks(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	durable := bytes.Equal(vol.durable[3<<20:3<<20+4096], data)
	if !durable && len(marks["a"]) == 0 {
		t.Fatal("after a power loss the write is not on the volume's disk, while the secondary holds it, and the log no longer marks its region")
	}
	if vol.flushes != 1 {
		t.Fatalf("Clean flushed the volume %d times, want once", vol.flushes)
	}
	l.Close()
}

// TestAFlushThatFailsKeepsTheMarks: the volume's flush fails (a writeback
// error) when Clean is about to unmark a region. The region stays marked,
// and is handed over as a failed write, with the error.
func TestAFlushThatFailsKeepsTheMarks(t *testing.T) {
	defer func(d time.Duration) { Idle = d }(Idle)
	Idle = 0
	path := filepath.Join(t.TempDir(), "actlog")
	vol := newCachedVolume(8 << 20)
	vol.fail = disk.EIO
	l, _, err := Open(path, map[string]int64{"a": 8 << 20, "b": 8 << 20}, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var failed [][2]int64
	var failedErr error
	l.SetFlush(func(name string) error {
		if name == "a" {
			return vol.flush()
		}
		return nil
	}, func(name string, regions [][2]int64, err error) {
		if name != "a" {
			t.Errorf("volume %s handed over as failed; only a's flush failed", name)
		}
		failed, failedErr = append(failed, regions...), err
	})
	for _, name := range []string{"a", "b"} {
		if err := l.Mark(name, 3<<20, 4096); err != nil {
			t.Fatal(err)
		}
		vol.write(make([]byte, 4096), 3<<20)
		l.Wrote(name, 3<<20, 4096)
		l.Done(name, 3<<20, 4096)
	}
	if err := l.Clean(); err == nil {
		t.Error("Clean returned no error although a volume's flush failed")
	}
	if !errors.Is(failedErr, disk.EIO) || len(failed) != 1 || failed[0] != [2]int64{3 << 20, 1 << 20} {
		t.Fatalf("handed over as failed: %v (%v), want a's region 3 MiB with EIO", failed, failedErr)
	}
	marks, err := ReadMarks(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(marks["a"]) != 1 || len(marks["b"]) != 0 {
		t.Fatalf("marks after a's flush failed: %v, want a's region kept and b's cleared", marks)
	}
}

// TestAFlushThatKeepsFailingIsReportedOnce: a volume's flush fails at every
// try (a disk gone bad). Its marks are kept and handed over once: the
// cleans that follow, about once a second, flush it again only for regions
// marked since, and neither report nor log the same regions again.
func TestAFlushThatKeepsFailingIsReportedOnce(t *testing.T) {
	l := idleLog(t)
	flushes, reports := 0, 0
	l.SetFlush(func(string) error { flushes++; return disk.EIO }, func(string, [][2]int64, error) { reports++ })
	if err := l.Mark("a", 3<<20, 4096); err != nil {
		t.Fatal(err)
	}
	l.Wrote("a", 3<<20, 4096)
	l.Done("a", 3<<20, 4096)
	if err := l.Clean(); err == nil {
		t.Fatal("Clean returned no error although the volume's flush failed")
	}
	for range 3 {
		if err := l.Clean(); err != nil {
			t.Errorf("a later Clean, nothing marked since: %v", err)
		}
	}
	if flushes != 1 || reports != 1 || l.Marked() != 1 {
		t.Errorf("four cleans, the flush failing: %d flushes, %d reports, %d regions marked; want 1, 1, 1", flushes, reports, l.Marked())
	}
}

// TestAWriteDuringTheFlushStaysMarkedWhenTheClockStepsBack: Clean has
// found a region idle and is flushing its volume when the wall clock is
// stepped back a minute (NTP, an operator). A write to the region is
// marked, written and acknowledged meanwhile: the flush, begun before its
// pwrite, does not cover it, so Clean must keep the region marked, however
// the clock stamped its use.
func TestAWriteDuringTheFlushStaysMarkedWhenTheClockStepsBack(t *testing.T) {
	defer func(f func() int64) { wallNow = f }(wallNow)
	var step atomic.Int64
	wallNow = func() int64 { return time.Now().UnixNano() - step.Load() }
	l := idleLog(t)
	write := func() {
		if err := l.Mark("a", 3<<20, 4096); err != nil {
			t.Error(err)
		}
		l.Wrote("a", 3<<20, 4096)
		l.Done("a", 3<<20, 4096)
	}
	l.SetFlush(func(string) error {
		step.Store(int64(time.Minute))
		write()
		return nil
	}, func(string, [][2]int64, error) {})
	write()
	time.Sleep(time.Millisecond)
	if err := l.Clean(); err != nil {
		t.Fatal(err)
	}
	if n := l.Marked(); n != 1 {
		t.Errorf("a write marked, written and acknowledged during the flush, the clock stepped back: %d regions marked after the Clean, want 1", n)
	}
}

// TestAFlushThatFailsAsTheLogTurnsOffHandsOverTheVolume: the log is turned
// off (its own disk failed, and the run goes on without it) while Clean
// flushes a volume, and the flush fails. The log no longer says which
// regions the volume may not hold, and the writeback error is reported
// once, so a later flush (the stop's) passes: the whole volume is handed
// over, as a write the volume failed, rather than nothing.
func TestAFlushThatFailsAsTheLogTurnsOffHandsOverTheVolume(t *testing.T) {
	l := idleLog(t)
	var failed [][2]int64
	l.SetFlush(func(string) error {
		l.mu.Lock()
		l.off = disk.EIO
		l.mu.Unlock()
		return disk.EIO
	}, func(_ string, regions [][2]int64, _ error) { failed = append(failed, regions...) })
	if err := l.Mark("a", 3<<20, 4096); err != nil {
		t.Fatal(err)
	}
	l.Wrote("a", 3<<20, 4096)
	l.Done("a", 3<<20, 4096)
	time.Sleep(time.Millisecond)
	if err := l.Clean(); !errors.Is(err, disk.EIO) {
		t.Errorf("Clean: %v, want the flush's EIO", err)
	}
	if len(failed) != 1 || failed[0] != [2]int64{0, 8 << 20} {
		t.Errorf("handed over: %v, want the whole volume [0, 8 MiB)", failed)
	}
}

// idleLog opens a log of one 8 MiB volume "a", closed at the test's end,
// whose regions are idle at once (Idle 0) until then.
func idleLog(t *testing.T) *Log {
	t.Helper()
	old := Idle
	Idle = 0
	l, _, err := Open(filepath.Join(t.TempDir(), "actlog"), map[string]int64{"a": 8 << 20}, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.Close()
		Idle = old
	})
	return l
}

// TestARegionHandedOverStaysMarkedUntilItsPairTakesIt: a flush of volume
// a fails, and Clean hands a's marked region over, to suspend its pair.
// Before the pair manager takes it (its Stick), the pair's resync of an
// earlier suspension ends and Unstick drops a's sticky marks; a mark of
// b's then writes the log. A kill -9 now must find a's region marked:
// the pair state on disk says duplex, and the region's write may not be on
// a's disk. Once the pair took the region, Unstick drops it as before.
func TestARegionHandedOverStaysMarkedUntilItsPairTakesIt(t *testing.T) {
	l, path := idleLogAB(t)
	var handed [][2]int64
	l.SetFlush(func(name string) error {
		if name == "a" && len(handed) == 0 {
			return disk.EIO
		}
		return nil
	}, func(_ string, regions [][2]int64, _ error) { handed = append(handed, regions...) })
	if err := l.Mark("a", 3<<20, 4096); err != nil {
		t.Fatal(err)
	}
	l.Wrote("a", 3<<20, 4096)
	l.Done("a", 3<<20, 4096)
	if err := l.Clean(); err == nil || len(handed) != 1 {
		t.Fatalf("Clean with a's flush failing: %v, handed over %v; want the error and a's region", err, handed)
	}
	onDisk := func(b int) int {
		t.Helper()
		if err := l.Mark("b", int64(b)<<20, 4096); err != nil {
			t.Fatal(err)
		}
		marks, err := ReadMarks(nil, path)
		if err != nil {
			t.Fatal(err)
		}
		return len(marks["a"])
	}
	l.Unstick("a")
	if n := onDisk(0); n != 1 {
		t.Fatalf("handed over, not yet taken by its pair, then Unstick: a has %d regions marked on disk, want its 1", n)
	}
	if err := l.Stick("a", handed[0][0], handed[0][1]); err != nil {
		t.Fatal(err)
	}
	l.Unstick("a")
	if n := onDisk(1); n != 0 {
		t.Fatalf("taken by its pair, then Unstick: a has %d regions marked on disk, want none", n)
	}
}

// idleLogAB opens a log of volumes a and b, 8 MiB each, in a directory of
// the test's, with Idle 0 (a region idle as soon as it has no update under
// way) until the test ends, which closes the log; and returns its path.
func idleLogAB(t *testing.T) (*Log, string) {
	t.Helper()
	old := Idle
	Idle = 0
	path := filepath.Join(t.TempDir(), "actlog")
	l, _, err := Open(path, map[string]int64{"a": 8 << 20, "b": 8 << 20}, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.Close()
		Idle = old
	})
	return l, path
}
