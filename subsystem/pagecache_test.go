package subsystem

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"duplex/disk"
	"duplex/internal/testenv"
	"duplex/sidefile"
	"duplex/timer"
	"duplex/volume"
)

// residentPages counts the pages of the file at path that are in the page
// cache.
func residentPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A block device's size is where it ends; Stat says 0.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		t.Fatal(err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	pg := os.Getpagesize()
	vec := make([]byte, (len(m)+pg-1)/pg)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatalf("mincore %s: %v", path, e)
	}
	n := 0
	for _, b := range vec {
		n += int(b & 1)
	}
	return n
}

func dropPageCache(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const fadvDontneed = 4
	if _, _, e := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontneed, 0, 0); e != 0 {
		t.Fatalf("fadvise %s: %v", path, e)
	}
}

// A copy's read must not leave the volume in the page cache: a long
// sequential read there is read ahead into large folios, and every later
// small write of the users into one of them costs many times a write into a
// small one.
func TestCopyLeavesVolumeOutOfPageCache(t *testing.T) {
	f := newFixture(t, 64<<20)
	ctx := context.Background()
	v := f.vols["v0"]
	data := bytes.Repeat([]byte{0x5a}, volSize)
	if err := f.ss.Write(ctx, "v0", data, 0); err != nil {
		t.Fatal(err)
	}
	us, _, _ := f.ss.Drain()
	releaseAll(f.side, us)
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	dropPageCache(t, v.Path())
	if n := residentPages(t, v.Path()); n != 0 {
		t.Skipf("%d pages of the volume stay in the page cache after fadvise(DONTNEED): cannot tell", n)
	}
	if err := f.ss.Copy(ctx, "v0", 0, volSize); err != nil {
		t.Fatal(err)
	}
	us, _, _ = f.ss.Drain()
	if len(us) != 1 || !bytes.Equal(us[0].Data, data) {
		t.Fatalf("copy drained %d updates, want 1 carrying the volume's content", len(us))
	}
	releaseAll(f.side, us)
	if n := residentPages(t, v.Path()); n != 0 {
		t.Fatalf("after a copy of the whole volume %d of its %d pages are in the page cache, want 0", n, volSize/os.Getpagesize())
	}
}

// directVolume opens a 4 MiB volume in a file of the test's directory, and
// skips the test where that file system does not take direct I/O: large
// writes go through the page cache there.
func directVolume(t *testing.T) (string, *volume.Volume) {
	t.Helper()
	return directVolumeOf(t, 4<<20)
}

// directVolumeOf is directVolume of size bytes.
func directVolumeOf(t *testing.T, size int64) (string, *volume.Volume) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v0.img")
	v, err := volume.Open(path, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	probe, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err == nil {
		defer probe.Close()
	}
	if err != nil || !disk.TakesDirect(probe.Fd()) {
		t.Skipf("the file system of %s does not take direct I/O (%v): large writes go through the page cache there", path, err)
	}
	return path, v
}

// Writes of a megabyte or more reach the primary volume past the page cache
// where the file system takes direct I/O and several are on their way at
// once: in a burst of large writes the copy of each into fresh page cache
// was the largest part of the primary's CPU beside the socket's read
// (bench/RESULTS.md), and the sidefile holds the data for replication
// whatever the page cache holds. One alone (a writer at queue depth 1,
// which would wait for the device's round trip) and a short write still
// go through the page cache.
func TestLargeWriteGoesPastThePageCache(t *testing.T) {
	path, v := directVolume(t)
	side := sidefile.New(64 << 20)
	ss := New("ss1", timer.New(), side, map[string]*volume.Volume{"v0": v}, []string{"v0"})
	ctx := context.Background()
	payload := func(seed int) []byte {
		b := ss.NewPayload(1 << 20)
		for i := range b {
			b[i] = byte(i*13 + seed)
		}
		return b
	}
	// Two 1 MiB writes, each held before its volume write until both
	// are on their way; then the first to arrive waits until the other
	// is done, the order a loaded machine may give them anyway: the other
	// finds it on its way and goes past the page cache, and it, alone by
	// then, goes through it.
	var arrived sync.WaitGroup
	arrived.Add(2)
	var arrivals atomic.Int32
	oneDone := make(chan struct{})
	var once sync.Once
	ss.beforeVolumeWrite = func(string) {
		first := arrivals.Add(1) == 1
		arrived.Done()
		arrived.Wait()
		if first {
			<-oneDone
		}
	}
	data := [][]byte{payload(1), payload(2)}
	want := [][]byte{bytes.Clone(data[0]), bytes.Clone(data[1])}
	var wg sync.WaitGroup
	for i, off := range []int64{0, 1 << 20} {
		wg.Go(func() {
			if err := ss.WriteOwned(ctx, "v0", data[i], off); err != nil {
				t.Error(err)
			}
			once.Do(func() { close(oneDone) })
		})
	}
	wg.Wait()
	ss.beforeVolumeWrite = nil
	if n := residentPages(t, path); n != 256 {
		t.Errorf("after two 1 MiB writes at once, the second done after the first, %d pages of the volume are in the page cache, want the 256 of the second", n)
	}
	alone := payload(3)
	want = append(want, bytes.Clone(alone))
	if err := ss.WriteOwned(ctx, "v0", alone, 2<<20); err != nil {
		t.Fatal(err)
	}
	if n := residentPages(t, path); n != 512 {
		t.Errorf("a 1 MiB write alone left %d pages in the page cache beside the 256 before, want 512: it did not go through it", n)
	}
	small := bytes.Repeat([]byte{0x33}, 4096)
	if err := ss.Write(ctx, "v0", small, 3<<20); err != nil {
		t.Fatal(err)
	}
	if n := residentPages(t, path); n != 513 {
		t.Errorf("a 4 KiB write left %d pages in the page cache beside the 512 of the writes before, want 513", n)
	}
	us, _, _ := ss.Drain()
	if len(us) != 4 {
		t.Fatalf("drained %d updates, want the four writes", len(us))
	}
	for _, u := range us {
		i := int(u.Offset >> 20)
		if i < 3 && !bytes.Equal(u.Data, want[i]) || i == 3 && !bytes.Equal(u.Data, small) {
			t.Errorf("the update at %d does not carry its write's data", u.Offset)
		}
	}
	releaseAll(side, us)
	for i, w := range want {
		if got := readVol(t, v, int64(i)<<20, 1<<20); !bytes.Equal(got, w) {
			t.Errorf("the volume does not hold the large write's data at %d MiB", i)
		}
	}
	if got := readVol(t, v, 3<<20, 4096); !bytes.Equal(got, small) {
		t.Error("the volume does not hold the small write's data")
	}
}

// On a block device a large write goes through the page cache, however
// many are on their way: the kernel serialises a file's buffered writes
// with its direct ones (the inode's lock), but not a block device's. A
// user's small write beside a direct one, into a large folio that
// readahead brought in while the direct write was on its way, dirties the
// folio, and the kernel then cannot drop its old copy of the direct
// write's range ("Page cache invalidation failure on direct I/O"): reads
// of the range return that copy, not the acknowledged write.
func TestLargeWriteToADeviceGoesThroughThePageCache(t *testing.T) {
	const size = 4 << 20
	dev := testenv.LoopDevice(t, size, 512, 0)
	v, err := volume.Open(dev, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	side := sidefile.New(64 << 20)
	ss := New("ss1", timer.New(), side, map[string]*volume.Volume{"v0": v}, []string{"v0"})
	ctx := context.Background()
	dropPageCache(t, dev)
	var arrived sync.WaitGroup
	arrived.Add(2)
	ss.beforeVolumeWrite = func(string) {
		arrived.Done()
		arrived.Wait()
	}
	var wg sync.WaitGroup
	for _, off := range []int64{0, 1 << 20} {
		wg.Go(func() {
			b := ss.NewPayload(1 << 20)
			for i := range b {
				b[i] = byte(i*13 + int(off>>20))
			}
			if err := ss.WriteOwned(ctx, "v0", b, off); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ss.beforeVolumeWrite = nil
	if n := residentPages(t, dev); n < 512 {
		t.Errorf("after two 1 MiB writes at once to a block device %d pages of it are in the page cache, want their 512: they went past it", n)
	}
	us, _, _ := ss.Drain()
	releaseAll(side, us)
}

// A large write the sidefile held back (paced, or waiting for room) goes
// through the page cache, however many are on their way: its rate is the
// secondary's then, not the primary's CPU, and a direct write would take
// the device's bandwidth at once, where the page cache takes rewrites of a
// range once and writes them back later; on a machine whose disk the
// secondary shares (the bench's sustained 1 MiB writes, a one-machine
// session), every paced megabyte went to the disk a third time beside the
// secondary's journal and volume writes.
func TestPacedLargeWriteGoesThroughThePageCache(t *testing.T) {
	path, v := directVolume(t)
	const limit = 64 << 20
	side := sidefile.New(limit)
	side.SetPacing(sidefile.Pacing{Start: 0.5, MaxDelay: time.Millisecond})
	// Three quarters full: past the pacing start, with room for both.
	side.Take(limit * 3 / 4)
	ss := New("ss1", timer.New(), side, map[string]*volume.Volume{"v0": v}, []string{"v0"})
	// Both on their way before either reaches the volume: unpaced, both
	// would go past the page cache.
	want := twoLargeWritesAtOnce(t, ss, 7, func() {})
	if n := residentPages(t, path); n != 512 {
		t.Errorf("after two paced 1 MiB writes at once %d pages of the volume are in the page cache, want their 512: they went past it", n)
	}
	us, _, _ := ss.Drain()
	releaseAll(side, us)
	side.Release(limit * 3 / 4)
	for i, w := range want {
		if got := readVol(t, v, int64(i)<<20, 1<<20); !bytes.Equal(got, w) {
			t.Errorf("the volume does not hold the paced write's data at %d MiB", i)
		}
	}
}

// A large write that waited for sidefile room, unpaced, goes through the
// page cache as a paced one does: the secondary set its rate.
func TestLargeWriteThatWaitedForRoomGoesThroughThePageCache(t *testing.T) {
	path, v := directVolume(t)
	const limit = 64 << 20
	side := sidefile.New(limit)
	side.SetPacing(sidefile.Pacing{})
	side.Take(limit) // full: both writes wait for room
	ss := New("ss1", timer.New(), side, map[string]*volume.Volume{"v0": v}, []string{"v0"})
	twoLargeWritesAtOnce(t, ss, 5, func() {
		waitFor(t, "both writes waiting for room", func() bool { return side.Stats().Waiting == 2 })
		side.Release(limit)
	})
	if n := residentPages(t, path); n != 512 {
		t.Errorf("after two 1 MiB writes at once that waited for sidefile room %d pages of the volume are in the page cache, want their 512: they went past it", n)
	}
	us, _, _ := ss.Drain()
	releaseAll(side, us)
}

// twoLargeWritesAtOnce writes 1 MiB at 0 and at 1 MiB of v0, both on
// their way before either reaches the volume (so that, unheld, both would
// go past the page cache), runs meanwhile while they are, and returns the
// data written, each byte i of the write at m MiB being i*mul+m.
func twoLargeWritesAtOnce(t *testing.T, ss *Subsystem, mul int, meanwhile func()) [][]byte {
	t.Helper()
	ctx := context.Background()
	var arrived sync.WaitGroup
	arrived.Add(2)
	ss.beforeVolumeWrite = func(string) {
		arrived.Done()
		arrived.Wait()
	}
	var want [][]byte
	var wg sync.WaitGroup
	for _, off := range []int64{0, 1 << 20} {
		b := ss.NewPayload(1 << 20)
		for i := range b {
			b[i] = byte(i*mul + int(off>>20))
		}
		want = append(want, bytes.Clone(b))
		wg.Go(func() {
			if err := ss.WriteOwned(ctx, "v0", b, off); err != nil {
				t.Error(err)
			}
		})
	}
	meanwhile()
	wg.Wait()
	ss.beforeVolumeWrite = nil
	return want
}
