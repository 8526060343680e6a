package volume

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadWriteTrimZeroes(t *testing.T) {
	v, err := Open(filepath.Join(t.TempDir(), "v.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	data := bytes.Repeat([]byte{0xab}, 64<<10)
	if err := v.WriteAt(data, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := v.ReadAt(got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: err %v, equal %v", err, bytes.Equal(got, data))
	}
	if err := v.Trim(4096, 8192); err != nil {
		t.Fatal(err)
	}
	if err := v.WriteZeroes(4096+8192, 4096); err != nil {
		t.Fatal(err)
	}
	if err := v.ReadAt(got, 4096); err != nil {
		t.Fatal(err)
	}
	want := append(make([]byte, 12288), data[12288:]...)
	if !bytes.Equal(got, want) {
		t.Fatal("trimmed and zeroed ranges do not read back as zeroes")
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestOutOfRangeIsAnErrorNotAShortWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.img")
	v, err := Open(path, 8192)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	cases := []struct {
		name string
		err  error
	}{
		{"write past end", v.WriteAt(make([]byte, 4096), 6144)},
		{"read past end", v.ReadAt(make([]byte, 4096), 8000)},
		{"negative offset", v.WriteAt(make([]byte, 1), -1)},
		{"trim past end", v.Trim(4096, 8192)},
		{"zeroes past end", v.WriteZeroes(8193, 0)},
	}
	for _, c := range cases {
		if !errors.Is(c.err, ErrOutOfRange) {
			t.Errorf("%s: got %v, want ErrOutOfRange", c.name, c.err)
		}
	}
	got := make([]byte, 8192)
	if err := v.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, 8192)) {
		t.Fatal("a refused write changed the volume")
	}
}

func TestSizeMismatchRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.img")
	v, err := Open(path, 8192)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if _, err := Open(path, 4096); !errors.Is(err, ErrWrongSize) || !strings.Contains(err.Error(), "image is 8192 bytes, configured size is 4096") {
		t.Fatalf("reopening with another size: %v, want ErrWrongSize saying both sizes", err)
	}
	if _, err := Open(path, -512); err == nil {
		t.Fatal("a negative size accepted")
	}
	// Size 0 is none configured: the image's own.
	v, err = Open(path, 0)
	if err != nil || v.Size() != 8192 {
		t.Fatalf("reopening without a size: %v, want the image's 8192 bytes", err)
	}
	v.Close()
}

// ReadThrough reads what ReadAt reads, including writes still in the page
// cache, for requests aligned or not, up to the end of an image whose size
// is not a multiple of the page size.
func TestReadThroughReadsWhatReadAtReads(t *testing.T) {
	const size = 1<<20 + 3*512
	v, err := Open(filepath.Join(t.TempDir(), "v.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	img := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	if err := v.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	// Dirty pages over part of it: the read must see them.
	for i := range 64 {
		b := bytes.Repeat([]byte{byte(i)}, 1+rng.IntN(9000))
		off := rng.Int64N(size - int64(len(b)))
		if err := v.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		copy(img[off:], b)
	}
	cases := [][2]int64{
		{0, 64 << 10}, {4096, 4096}, {512, 512}, {1000, 7000}, {size - 512, 512},
		{size - 64<<10, 64 << 10}, {size - 1, 1}, {0, size}, {4095, 2},
	}
	for range 200 {
		off := rng.Int64N(size)
		cases = append(cases, [2]int64{off, 1 + rng.Int64N(min(size-off, 200<<10))})
	}
	for _, c := range cases {
		off, n := c[0], c[1]
		// One byte in, so the buffer is not aligned however it is allocated.
		raw := make([]byte, n+1)
		for _, got := range [][]byte{raw[:n], raw[1:]} {
			if err := v.ReadThrough(got, off); err != nil {
				t.Fatalf("ReadThrough [%d, +%d): %v", off, n, err)
			}
			if !bytes.Equal(got, img[off:off+n]) {
				t.Fatalf("ReadThrough [%d, +%d) differs from what was written", off, n)
			}
		}
	}
	if v.noDirect.Load() {
		t.Log("the file system refuses O_DIRECT: only the buffered fallback was tested")
	}
	if err := v.ReadThrough(make([]byte, 2), size-1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("ReadThrough past the end = %v, want ErrOutOfRange", err)
	}
}

// A copy may still be reading when the volume is closed at shutdown: the read
// must then fail, never return the bytes of whatever file the kernel gave the
// closed descriptor's number to.
func TestReadThroughRacingCloseNeverReadsAnotherFile(t *testing.T) {
	dir := t.TempDir()
	const size = 64 << 10
	others := make([]string, 8)
	for i := range others {
		others[i] = filepath.Join(dir, fmt.Sprintf("other%d", i))
		if err := os.WriteFile(others[i], bytes.Repeat([]byte{0xbb}, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want := bytes.Repeat([]byte{0xaa}, size)
	rounds := 300
	if testing.Short() {
		rounds = 30
	}
	for round := range rounds {
		v, err := Open(filepath.Join(dir, fmt.Sprintf("v%d.img", round)), size)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.WriteAt(want, 0); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, size)
		if err := v.ReadThrough(got, 0); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			buf := make([]byte, size)
			for {
				if err := v.ReadThrough(buf, 0); err != nil {
					done <- nil
					return
				}
				if !bytes.Equal(buf, want) {
					done <- fmt.Errorf("round %d: a read that raced Close returned another file's bytes", round)
					return
				}
			}
		}()
		runtime.Gosched()
		v.Close()
		var open []*os.File
		for _, p := range others {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, f)
		}
		err = <-done
		for _, f := range open {
			f.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// ReadAt serves what the page cache holds without blocking and reads the rest
// the ordinary way: every mix of cached and uncached pages, and unaligned
// ranges across them, must read back what was written.
func TestReadAtPartlyInPageCache(t *testing.T) {
	const size = 1 << 20
	v, err := Open(filepath.Join(t.TempDir(), "v.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	img := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	if err := v.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	drop := func() {
		t.Helper()
		if err := v.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fadvise(int(v.f.Fd()), 0, size, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
	}
	drop()
	if n := v.readCached(make([]byte, 4096), 512<<10); n != 0 {
		t.Logf("%d bytes of a dropped page read without blocking: the page cache kept them", n)
	}
	// Cache every other 64 KiB, then read ranges straddling both kinds.
	for off := int64(0); off < size; off += 128 << 10 {
		if _, err := v.f.ReadAt(make([]byte, 64<<10), off); err != nil {
			t.Fatal(err)
		}
	}
	for range 300 {
		off := rng.Int64N(size)
		n := 1 + rng.Int64N(min(size-off, 300<<10))
		got := make([]byte, n)
		if err := v.ReadAt(got, off); err != nil {
			t.Fatalf("ReadAt [%d, +%d): %v", off, n, err)
		}
		if !bytes.Equal(got, img[off:off+n]) {
			t.Fatalf("ReadAt [%d, +%d) differs from what was written", off, n)
		}
		if rng.IntN(20) == 0 {
			drop()
		}
	}
	// A range wholly in the page cache is read by the fast path alone.
	got := make([]byte, 8192)
	if err := v.ReadAt(got, 4096); err != nil {
		t.Fatal(err)
	}
	if n := v.readCached(got, 4096); n != len(got) && !v.noNowait.Load() {
		t.Fatalf("readCached of a range just read = %d bytes, want %d", n, len(got))
	}
}

// TestWriteVAtWritesBuffersBackToBack: a vectored write leaves the bytes
// the same writes one after another leave, empty buffers and more buffers
// than one pwritev takes included; one that reaches past the end writes
// nothing.
func TestWriteVAtWritesBuffersBackToBack(t *testing.T) {
	const size = 1 << 20
	v, err := Open(filepath.Join(t.TempDir(), "v.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	const iovMax = 1024 // the most buffers one pwritev takes
	var bufs [][]byte
	var want []byte
	for i := range iovMax + 300 {
		b := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, i%5)
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	bufs = append(bufs, nil, make([]byte, 100000))
	want = append(want, make([]byte, 100000)...)
	orig := append([][]byte(nil), bufs...)
	const off = 12345
	if err := v.WriteVAt(bufs, off); err != nil {
		t.Fatal(err)
	}
	for i := range bufs {
		if len(bufs[i]) != len(orig[i]) {
			t.Fatal("WriteVAt changed the caller's buffers")
		}
	}
	got := make([]byte, len(want))
	if err := v.ReadAt(got, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the vectored write left other bytes than its buffers back to back")
	}
	if err := v.WriteVAt([][]byte{{1}, make([]byte, size)}, 0); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("a vectored write past the end returned %v, want ErrOutOfRange", err)
	}
	one := make([]byte, 1)
	if err := v.ReadAt(one, 0); err != nil || one[0] != 0 {
		t.Fatalf("a refused vectored write wrote its first byte (%v)", err)
	}
}

// StartWriteback only starts writing back: the data reads back the same,
// and Flush then makes it durable; on a closed volume it fails with the
// volume's name, not silently.
func TestStartWritebackThenFlush(t *testing.T) {
	v, err := Open(filepath.Join(t.TempDir(), "v.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0xcd}, 8192)
	if err := v.WriteAt(data, 4096); err != nil {
		t.Fatal(err)
	}
	if err := v.StartWriteback(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := v.ReadAt(got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back after starting the writeback: err %v, equal %v", err, bytes.Equal(got, data))
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	v.Close()
	if err := v.StartWriteback(); err == nil || !strings.Contains(err.Error(), "v.img") {
		t.Fatalf("StartWriteback of a closed volume: %v, want an error naming it", err)
	}
}
