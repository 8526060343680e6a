package volume

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"duplex/disk"
)

// TestWriteThroughReadsBackAsWritten: a run written past the page cache
// reads back as its buffers back to back, through ReadAt (the page cache,
// which held older bytes of the range, dirty and clean) and ReadThrough, in
// runs longer than one direct write and split at unaligned places; a run
// too short or unaligned is a buffered write; one past the end writes
// nothing. Where the file system takes O_DIRECT, every byte of a direct
// run, and none of another, goes down the volume's direct descriptor, and
// after Flush the volume reads back as written past the page cache too.
//
// Whether the pages of a direct run's range are left out of the page cache
// is the kernel's to say, not the volume's: ext4 (iomap_dio_rw) makes a
// direct write buffered when it cannot invalidate the cached pages of its
// range first (iomap_dio_invalidate_fail), and drops them afterwards only
// if nothing holds them. Under load that happens to pages the test's own
// buffered writes left, with the data read back right every time, so the
// test asserts only what the volume decides: the direct path taken.
func TestWriteThroughReadsBackAsWritten(t *testing.T) {
	const size = 24 << 20
	v, err := Open(filepath.Join(t.TempDir(), "v.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var directBytes atomic.Int64
	realWrite := directWriteV
	directWriteV = func(f *os.File, bufs [][]byte, off int64) (int64, error) {
		n, err := realWrite(f, bufs, off)
		directBytes.Add(n)
		return n, err
	}
	defer func() { directWriteV = realWrite }()
	img := make([]byte, size)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	// Older bytes everywhere, the first half flushed (clean pages), the
	// rest dirty in the page cache.
	if err := v.WriteAt(img[:size/2], 0); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := v.WriteAt(img[size/2:], size/2); err != nil {
		t.Fatal(err)
	}
	runs := []struct {
		off, n int64
		direct bool // long and aligned enough
	}{
		{0, 1 << 20, true},
		{4 << 20, throughChunk + 3*directAlign, true}, // two direct writes
		{size/2 - 1<<20, 9<<20 + directAlign, true},   // clean and dirty pages, three writes
		{20 << 20, 64 << 10, false},                   // short
		{21<<20 + 512, 1 << 20, false},                // unaligned offset
		{22 << 20, 1<<20 + 100, false},                // unaligned length
		{size - 1<<20, 1 << 20, true},                 // the last MiB
		{8 << 20, throughChunk + 1<<20, true},         // one aligned buffer, written from where it is
		{14 << 20, 1 << 20, true},                     // the same, a primary's 1 MiB write
	}
	for i, r := range runs {
		want := make([]byte, r.n)
		for j := range want {
			want[j] = byte(i + 1 + j*7)
		}
		// Pieces of every kind of length, the first not aligned; or, for
		// the runs from i = 7 on, the whole run in one aligned buffer.
		var bufs [][]byte
		if i >= 7 {
			b := disk.DirectBuffer(len(want))
			copy(b, want)
			bufs = [][]byte{b}
		}
		for rest := want; i < 7 && len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(600<<10))
			bufs = append(bufs, rest[:k])
			rest = rest[k:]
		}
		directBytes.Store(0)
		if err := v.WriteThrough(bufs, r.off); err != nil {
			t.Fatalf("run %d: WriteThrough [%d, +%d): %v", i, r.off, r.n, err)
		}
		copy(img[r.off:], want)
		if v.noDirectWrite.Load() {
			continue
		}
		wantDirect := int64(0)
		if r.direct {
			wantDirect = r.n
		}
		if n := directBytes.Load(); n != wantDirect {
			t.Errorf("run %d: %d bytes written direct, want %d", i, n, wantDirect)
		}
		if n := v.readCached(make([]byte, r.n), r.off); r.direct && n != 0 {
			t.Logf("run %d: the kernel left %d bytes of a direct run in the page cache", i, n)
		}
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, read := range []struct {
		name string
		fn   func([]byte, int64) error
	}{{"ReadAt", v.ReadAt}, {"ReadThrough", v.ReadThrough}} {
		got := make([]byte, size)
		if err := read.fn(got, 0); err != nil {
			t.Fatal(err)
		}
		for off := 0; off < size; off += 4096 {
			if !bytes.Equal(got[off:off+4096], img[off:off+4096]) {
				t.Fatalf("%s: the 4 KiB at %d differ from what was written", read.name, off)
			}
		}
	}
	if v.noDirectWrite.Load() {
		t.Log("the file system refuses O_DIRECT: only the buffered fallback was tested")
	}
	if err := v.WriteThrough([][]byte{make([]byte, 2<<20)}, size-1<<20); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("a run past the end returned %v, want ErrOutOfRange", err)
	}
	got := make([]byte, 1<<20)
	if err := v.ReadAt(got, size-1<<20); err != nil || !bytes.Equal(got, img[size-1<<20:]) {
		t.Fatalf("a refused run wrote part of itself (%v)", err)
	}
}

// TestDirectDescriptorsAreTheVolumesFile: the descriptors for direct reads
// and writes, opened on first use, are of the file the volume opened, not
// of whatever its path names by then (an image moved aside and another put
// in its place, a device link pointed elsewhere). A direct write to
// another file would be lost to the volume, and not covered by its Flush.
func TestDirectDescriptorsAreTheVolumesFile(t *testing.T) {
	const size = 4 << 20
	dir := t.TempDir()
	path := filepath.Join(dir, "v.img")
	v, err := Open(path, size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := os.Rename(path, filepath.Join(dir, "moved.img")); err != nil {
		t.Fatal(err)
	}
	other, err := Open(path, size)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	want := bytes.Repeat([]byte{0x5a}, 2<<20)
	if err := v.WriteThrough([][]byte{want}, 1<<20); err != nil {
		t.Fatal(err)
	}
	for _, read := range []struct {
		name string
		fn   func([]byte, int64) error
	}{{"ReadAt", v.ReadAt}, {"ReadThrough", v.ReadThrough}} {
		got := make([]byte, len(want))
		if err := read.fn(got, 1<<20); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the volume does not hold the run WriteThrough wrote", read.name)
		}
	}
	got := make([]byte, len(want))
	if err := other.ReadAt(got, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, len(want))) {
		t.Error("the run was written to the file now at the volume's path")
	}
}

// TestWriteThroughKeepsSeveralWritesInFlight: a long run is written as
// several direct writes on the device at once (one at a time left the
// disk idle between them while the applier copied the next), and
// WriteThrough returns only once every one of them is done: the
// secondary's checkpoint fsyncs the volume after it returns, and a write
// still in flight then would not be covered. A write that fails fails the
// run.
func TestWriteThroughKeepsSeveralWritesInFlight(t *testing.T) {
	const size = 32 << 20
	v, err := Open(filepath.Join(t.TempDir(), "v.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.directWriteFile() == nil {
		t.Skip("the file system refuses O_DIRECT: no direct writes to keep in flight")
	}
	var (
		mu             sync.Mutex
		inFlight, most int
		done           int
		fail           error
		release        = make(chan struct{})
		twoStarted     = make(chan struct{}, 1)
		realWrite      = directWriteV
	)
	directWriteV = func(f *os.File, b [][]byte, off int64) (int64, error) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == 2 {
			select {
			case twoStarted <- struct{}{}:
			default:
			}
		}
		mu.Unlock()
		<-release
		n, err := realWrite(f, b, off)
		mu.Lock()
		inFlight--
		done++
		if fail != nil {
			n, err = 0, fail
		}
		mu.Unlock()
		return n, err
	}
	defer func() { directWriteV = realWrite }()

	want := make([]byte, 13<<20)
	for i := range want {
		want[i] = byte(i*13 + 1)
	}
	bufs := [][]byte{want[:5000], want[5000 : 3<<20], want[3<<20:]} // not aligned: copied
	returned := make(chan error, 1)
	go func() { returned <- v.WriteThrough(bufs, 4<<20) }()
	select {
	case <-twoStarted:
	case err := <-returned:
		t.Fatalf("WriteThrough returned (%v) before a second write was in flight: one write at a time", err)
	case <-time.After(10 * time.Second):
		t.Fatal("a second direct write never started while the first was held: one write at a time")
	}
	select {
	case err := <-returned:
		t.Fatalf("WriteThrough returned (%v) with its writes held in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-returned; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if inFlight != 0 {
		t.Errorf("WriteThrough returned with %d writes in flight", inFlight)
	}
	t.Logf("%d direct writes, at most %d in flight", done, most)
	mu.Unlock()
	got := make([]byte, len(want))
	if err := v.ReadThrough(got, 4<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the run does not read back as written")
	}

	// A run one of whose writes fails fails, after the others are done.
	mu.Lock()
	fail = syscall.EIO
	mu.Unlock()
	err = v.WriteThrough(bufs, 4<<20)
	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("a run whose writes failed returned %v, want EIO", err)
	}
	if inFlight != 0 {
		t.Errorf("a failed WriteThrough returned with %d writes in flight", inFlight)
	}
}

// TestWriteThroughWaitsForEveryWriteWhenOneFails: a disk full or failing
// under one of a run's writes, while the others are still on the device,
// fails the run only once those are done, each still reading the bytes
// it was given (its buffer is not refilled under it):
// the applier's checkpoint, and the caller's reuse of its buffers, come
// after WriteThrough returns. No piece is taken after the failure.
func TestWriteThroughWaitsForEveryWriteWhenOneFails(t *testing.T) {
	const size = 32 << 20
	for _, fault := range []error{disk.ENOSPC, disk.EIO} {
		for _, inPlace := range []bool{false, true} {
			v, err := Open(filepath.Join(t.TempDir(), "v.img"), size)
			if err != nil {
				t.Fatal(err)
			}
			if v.directWriteFile() == nil {
				v.Close()
				t.Skip("the file system refuses O_DIRECT: no direct writes to keep in flight")
			}
			var want []byte
			var bufs [][]byte
			if inPlace {
				want = disk.DirectBuffer(size)
				bufs = [][]byte{want}
			} else {
				want = make([]byte, size)
				bufs = [][]byte{want[:5000], want[5000:]}
			}
			for i := range want {
				want[i] = byte(i*7 + 3)
			}
			var (
				mu       sync.Mutex
				started  int
				inFlight int
				wrong    []int64
				release  = make(chan struct{})
				held     = make(chan struct{}, throughDepth)
			)
			// The failed write is recorded late, as by a writer descheduled
			// between its write's return and the record: the held writes go
			// on only once it is.
			recorded := make(chan struct{})
			realFailed := throughFailed
			throughFailed = func(w *throughRun, err error) {
				time.Sleep(100 * time.Millisecond)
				realFailed(w, err)
				close(recorded)
			}
			realWrite := directWriteV
			directWriteV = func(f *os.File, bufs [][]byte, off int64) (int64, error) {
				b := bytes.Join(bufs, nil)
				mu.Lock()
				started++
				first := started == 1
				inFlight++
				mu.Unlock()
				defer func() {
					mu.Lock()
					inFlight--
					mu.Unlock()
				}()
				if first {
					// Fails at once, the others still on the device.
					for range throughDepth - 1 {
						<-held
					}
					return 0, fault
				}
				held <- struct{}{}
				<-release
				if !bytes.Equal(b, want[off:off+int64(len(b))]) {
					mu.Lock()
					wrong = append(wrong, off)
					mu.Unlock()
				}
				return realWrite(f, bufs, off)
			}
			returned := make(chan error, 1)
			go func() { returned <- v.WriteThrough(bufs, 0) }()
			select {
			case err := <-returned:
				t.Fatalf("%v in place %v: WriteThrough returned (%v) with writes held in flight", fault, inPlace, err)
			case <-time.After(50 * time.Millisecond):
			}
			<-recorded
			close(release)
			err = <-returned
			directWriteV = realWrite
			throughFailed = realFailed
			if !errors.Is(err, fault) {
				t.Errorf("%v in place %v: WriteThrough returned %v", fault, inPlace, err)
			}
			mu.Lock()
			if inFlight != 0 {
				t.Errorf("%v in place %v: WriteThrough returned with %d writes in flight", fault, inPlace, inFlight)
			}
			if len(wrong) > 0 {
				t.Errorf("%v in place %v: the writes at %v read bytes other than their run's", fault, inPlace, wrong)
			}
			if started > throughDepth+1 {
				t.Errorf("%v in place %v: %d writes started, pieces were taken after the failure", fault, inPlace, started)
			}
			mu.Unlock()
			v.Close()
		}
	}
}

// TestWriteThroughWritesAlignedBuffersInPlace: of a run's buffers, those
// on a block boundary in memory, whole blocks long and at least
// throughInPlaceMin (a sequential writer's updates in the secondary's
// placed frames) go to the device from where they lie; the others are
// copied into the aligned buffer, in the same writes. The run reads back
// as written either way.
func TestWriteThroughWritesAlignedBuffersInPlace(t *testing.T) {
	const size = 16 << 20
	v, err := Open(filepath.Join(t.TempDir(), "v.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.directWriteFile() == nil {
		t.Skip("the file system refuses O_DIRECT: no direct writes")
	}
	mem := disk.DirectBuffer(8 << 20)
	for i := range mem {
		mem[i] = byte(i*29 + 5)
	}
	bufs := [][]byte{
		mem[:1<<20],                // in place
		mem[1<<20 : 1<<20+8<<10],   // aligned, but short: copied
		mem[2<<20 : 4<<20],         // in place, across two writes
		mem[5<<20+100 : 6<<20+100], // not on a block boundary: copied
	}
	wantInPlace := []int{1 << 20, 0, 2 << 20, 0}
	inPlace := make([]int, len(bufs))
	var mu sync.Mutex
	realWrite := directWriteV
	directWriteV = func(f *os.File, iovs [][]byte, off int64) (int64, error) {
		mu.Lock()
		for _, p := range iovs {
			a := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
			for i, b := range bufs {
				lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
				if a >= lo && a+uintptr(len(p)) <= lo+uintptr(len(b)) {
					inPlace[i] += len(p)
				}
			}
		}
		mu.Unlock()
		return realWrite(f, iovs, off)
	}
	defer func() { directWriteV = realWrite }()
	if err := v.WriteThrough(bufs, 1<<20); err != nil {
		t.Fatal(err)
	}
	for i := range bufs {
		if inPlace[i] != wantInPlace[i] {
			t.Errorf("buffer %d: %d bytes written from where it lies, want %d", i, inPlace[i], wantInPlace[i])
		}
	}
	want := bytes.Join(bufs, nil)
	got := make([]byte, len(want))
	if err := v.ReadThrough(got, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the run does not read back as written")
	}
}
