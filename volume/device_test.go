package volume

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"duplex/disk"
	"duplex/internal/testenv"
)

// loopDevice is testenv.LoopDevice.
func loopDevice(t testing.TB, size int64, blockSize int, fill byte) string {
	t.Helper()
	return testenv.LoopDevice(t, size, blockSize, fill)
}

func deviceBytes(t *testing.T, dev string) int64 {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n uint64
	if err := ioctlPtr(int(f.Fd()), unix.BLKGETSIZE64, unsafe.Pointer(&n)); err != nil {
		t.Fatal(err)
	}
	return int64(n)
}

// readDevice reads all of dev with O_DIRECT, past the page cache: what the
// device itself holds.
func readDevice(t *testing.T, dev string) []byte {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := disk.DirectBuffer(int(deviceBytes(t, dev)))
	if err := preadFull(f, b, 0, len(b)); err != nil {
		t.Fatal(err)
	}
	return b
}

// A block device's size is the device's: taken when the config gives none,
// checked when it gives one, and never changed, nor the data on it, by a
// mismatch.
func TestBlockDeviceSize(t *testing.T) {
	const size = 8 << 20
	dev := loopDevice(t, size, 512, 0x5c)

	v, err := Open(dev, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Size(); got != size || !v.Device() {
		t.Errorf("opened without a size: %d bytes, device %v; want %d, a device", got, v.Device(), size)
	}
	v.Close()
	v, err = Open(dev, size)
	if err != nil {
		t.Fatalf("opened with its own size: %v", err)
	}
	v.Close()

	for _, wrong := range []int64{size / 2, size * 2} {
		_, err := Open(dev, wrong)
		if err == nil {
			t.Fatalf("opened a %d-byte device as %d bytes", size, wrong)
		}
		for _, want := range []string{dev, fmt.Sprint(size), fmt.Sprint(wrong)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("mismatch error %q does not name %s", err, want)
			}
		}
	}
	if got := deviceBytes(t, dev); got != size {
		t.Errorf("the device is %d bytes after the refused opens, want %d", got, size)
	}
	if !bytes.Equal(readDevice(t, dev), bytes.Repeat([]byte{0x5c}, size)) {
		t.Error("the refused opens changed the device's data")
	}
}

// A device held by another volume (or mounted) is refused, with the reason.
func TestBlockDeviceExclusive(t *testing.T) {
	dev := loopDevice(t, 1<<20, 512, 0)
	v, err := Open(dev, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	_, err = Open(dev, 0)
	if !errors.Is(err, syscall.EBUSY) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open of a device in use: %v, want EBUSY saying it is in use", err)
	}
}

// Paths that do not exist are created only as image files with a size, and
// never under /dev.
func TestOpenNeverCreatesWithoutSizeOrUnderDev(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "sub", "v.img")
	if _, err := Open(missing, 0); !errors.Is(err, ErrNoSize) {
		t.Errorf("missing image without a size: %v, want ErrNoSize", err)
	}
	if _, err := os.Stat(filepath.Dir(missing)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("its directory was created: %v", err)
	}
	dev := "/dev/duplex-test-no-such-device"
	if _, err := Open(dev, 1<<20); err == nil || !strings.Contains(err.Error(), "no such block device") {
		t.Errorf("missing path under /dev: %v, want no such block device", err)
	}
	if _, err := os.Lstat(dev); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s was created: %v", dev, err)
	}
	v, err := Open(missing, 1<<20)
	if err != nil {
		t.Fatalf("missing image with a size: %v", err)
	}
	v.Close()
	if _, err := Open(os.DevNull, 0); err == nil || !strings.Contains(err.Error(), "character device") {
		t.Errorf("a character device: %v, want refused as one", err)
	}
	if _, err := Open(t.TempDir(), 0); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("a directory: %v, want refused as one", err)
	}
}

// Without a configured size an existing image keeps its own size; an empty
// one, or one that is not whole sectors, needs a size.
func TestImageSizeLeftOut(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte{1}, n), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v, err := Open(write("a.img", 64<<10), 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Size() != 64<<10 || v.Device() {
		t.Errorf("existing image opened without a size: %d bytes, device %v", v.Size(), v.Device())
	}
	v.Close()
	if _, err := Open(write("empty.img", 0), 0); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty image without a size: %v", err)
	}
	if _, err := Open(write("odd.img", 1000), 0); err == nil || !strings.Contains(err.Error(), "not a multiple of 512") {
		t.Errorf("1000-byte image without a size: %v", err)
	}
}

// Trim and WriteZeroes on a block device leave zeroes on the device itself
// (read past the page cache) and through the volume, for ranges on and off
// the device's block boundaries, whichever way the device zeroes: by its own
// operations, or by written zeroes where it takes none.
func TestBlockDeviceTrimAndZeroes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		blockSize int
		noPunch   bool // as if the device refused fallocate
		noZeroout bool // and BLKZEROOUT
	}{
		{"512-byte blocks", 512, false, false},
		{"4096-byte blocks", 4096, false, false},
		{"4096-byte blocks, BLKZEROOUT", 4096, true, false},
		{"4096-byte blocks, written zeroes", 4096, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = 4 << 20
			dev := loopDevice(t, size, tc.blockSize, 0)
			v, err := Open(dev, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			if v.blockSize != int64(tc.blockSize) {
				t.Fatalf("logical block size %d, want %d", v.blockSize, tc.blockSize)
			}
			v.noPunch.Store(tc.noPunch)
			v.noZeroout.Store(tc.noZeroout)
			img := make([]byte, size)
			rng := rand.New(rand.NewPCG(3, 4))
			for i := range img {
				img[i] = byte(rng.Uint32() | 1)
			}
			if err := v.WriteAt(img, 0); err != nil {
				t.Fatal(err)
			}
			for _, r := range []struct {
				trim        bool
				off, length int64
			}{
				{true, 0, 64 << 10},
				{false, 1 << 20, 128 << 10},
				{true, 2<<20 + 100, 10000},  // off block boundaries at both ends
				{false, 3<<20 + 512, 1024},  // inside one 4 KiB block
				{true, size - 4096, 4096},   // the last block
				{false, 1<<20 + 7, 3},       // a few bytes
				{true, 1536 << 10, 1 << 20}, // across the other ranges
			} {
				if r.trim {
					err = v.Trim(r.off, r.length)
				} else {
					err = v.WriteZeroes(r.off, r.length)
				}
				if err != nil {
					t.Fatalf("trim %v [%d, +%d): %v", r.trim, r.off, r.length, err)
				}
				clear(img[r.off : r.off+r.length])
			}
			got := make([]byte, size)
			if err := v.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(got, img); i >= 0 {
				t.Fatalf("through the volume, byte %d is %#x, want %#x", i, got[i], img[i])
			}
			if err := v.Flush(); err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(readDevice(t, dev), img); i >= 0 {
				t.Fatalf("on the device, byte %d differs from what was written and zeroed", i)
			}
			// A loop device over a file that takes fallocate takes both.
			if v.noPunch.Load() != tc.noPunch || v.noZeroout.Load() != tc.noZeroout {
				t.Logf("the device refused: fallocate %v, BLKZEROOUT %v", v.noPunch.Load(), v.noZeroout.Load())
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// What the copy and the users' reads use works on a device: IsHole says
// nothing is a hole (a device has none to ask for), ReadThrough (O_DIRECT)
// reads what ReadAt reads, unaligned requests and writes still in the page
// cache included.
func TestBlockDeviceReads(t *testing.T) {
	const size = 2 << 20
	dev := loopDevice(t, size, 512, 0)
	v, err := Open(dev, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if hole, err := v.IsHole(0, size); err != nil || hole {
		t.Errorf("IsHole of a device: %v, %v; want false (copied with its data)", hole, err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	img := make([]byte, size)
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	if err := v.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		n := 1 + rng.IntN(70000)
		off := rng.Int64N(size - int64(n))
		want := make([]byte, n)
		if err := v.ReadAt(want, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want, img[off:off+int64(n)]) {
			t.Fatalf("ReadAt [%d, +%d) differs from what was written", off, n)
		}
		got := make([]byte, n)
		if err := v.ReadThrough(got, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("ReadThrough [%d, +%d) differs from ReadAt", off, n)
		}
	}
	if v.noDirect.Load() {
		t.Error("ReadThrough fell back from O_DIRECT on a loop device")
	}
}

// BenchmarkBlockDeviceZero zeroes 64 MiB of a loop device, then flushes it,
// each way the device may be asked to: what a trim costs at a site whose
// device takes each (the link carries only the trim's record either way).
// It reports the CPU time of this process per operation besides the wall
// time; the loop device's own work runs in kernel threads, not counted.
func BenchmarkBlockDeviceZero(b *testing.B) {
	const size = 64 << 20
	for _, m := range []struct {
		name               string
		noPunch, noZeroout bool
	}{
		{"fallocate", false, false},
		{"BLKZEROOUT", true, false},
		{"written", true, true},
	} {
		b.Run(m.name, func(b *testing.B) {
			dev := loopDevice(b, size, 512, 0)
			v, err := Open(dev, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			v.noPunch.Store(m.noPunch)
			v.noZeroout.Store(m.noZeroout)
			data := bytes.Repeat([]byte{0xa7}, size)
			var cpu time.Duration
			b.SetBytes(size)
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				if err := v.WriteAt(data, 0); err != nil {
					b.Fatal(err)
				}
				if err := v.Flush(); err != nil {
					b.Fatal(err)
				}
				c0 := cpuTime()
				b.StartTimer()
				if err := v.WriteZeroes(0, size); err != nil {
					b.Fatal(err)
				}
				if err := v.Flush(); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c0
			}
			if v.noPunch.Load() != m.noPunch || v.noZeroout.Load() != m.noZeroout {
				b.Fatalf("the device refused a method: fallocate %v, BLKZEROOUT %v", v.noPunch.Load(), v.noZeroout.Load())
			}
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
