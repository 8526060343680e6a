// Package volume is a storage device of the primary or the secondary storage
// subsystem of the method: a block device (an LVM volume, a partition, a loop
// device) or an image in a regular file.
//
// Every request is bounds-checked against the volume's size, so a request that
// reaches past the end is an error, never a short write that leaves half an
// update on disk.
//
// Trim and WriteZeroes both leave a range that reads back as zeroes, on every
// kind of volume: a trim is replicated as a trim, so the secondary, which may
// be another kind of volume than its primary, must read back what the
// primary reads back. In an image file they punch a hole, so the range costs
// no space. On a block device a plain discard (BLKDISCARD) does not promise
// zeroes on read, so they ask the device to zero the range (fallocate
// PUNCH_HOLE, which the kernel turns into a write-zeroes that may unmap, and
// which fails rather than write; then BLKZEROOUT, which writes zeroes where the
// device cannot do it otherwise), and write zeroes themselves where the
// device takes neither.
//
// A block device is never created, truncated or resized; its size is the
// device's. It is opened exclusively (O_EXCL), so a device that is mounted or
// held by another program is refused instead of written under it. Writes go
// through the page cache as they do for a file, but for WriteThrough's long
// aligned ones (direct, past it), and Flush (fdatasync) writes it back and
// flushes the device's write cache.
package volume

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"duplex/disk"
)

// ErrOutOfRange is returned for a request that does not lie inside the volume.
var ErrOutOfRange = errors.New("request out of range")

// Linux fallocate modes (not exported by package syscall).
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
	fallocZeroRange = 0x10
)

// Volume is an open block device or image file of a fixed size. It is safe
// for concurrent use: requests are positioned reads and writes.
type Volume struct {
	path string
	f    *os.File
	size int64

	// device is set for a block device; blockSize is then its logical block
	// size, the unit of its discard and zeroing operations. noPunch and
	// noZeroout are set once the device refuses one of them (zeroRange).
	device    bool
	blockSize int64
	noPunch   atomic.Bool
	noZeroout atomic.Bool
	// noZeroRange is set once the file system refuses
	// fallocate(ZERO_RANGE) (ZeroAllocated).
	noZeroRange atomic.Bool

	// direct is a second descriptor opened with O_DIRECT on first use by
	// ReadThrough; noDirect is set once the file system refuses it.
	directMu sync.Mutex
	direct   *os.File
	noDirect atomic.Bool
	// directW is a descriptor opened with O_DIRECT for writing, on first
	// use by WriteThrough; noDirectWrite is set once the file system
	// refuses it.
	directW       *os.File
	noDirectWrite atomic.Bool

	// rc is f's RawConn, for the calls that cannot block (fast_linux.go);
	// noNowait is set once the file system refuses them.
	rc       syscall.RawConn
	noNowait atomic.Bool

	// log says, once, that the file system refused a direct write or
	// read and the volume goes through the page cache from then on
	// (SetLogger; slog.Default() without it).
	log atomic.Pointer[slog.Logger]
}

// SetLogger makes l the logger of what the volume says of itself: that
// the file system refused its direct I/O (once).
func (v *Volume) SetLogger(l *slog.Logger) { v.log.Store(l) }

func (v *Volume) logger() *slog.Logger {
	if l := v.log.Load(); l != nil {
		return l
	}
	return slog.Default()
}

// directAlign is the alignment of offsets, lengths and buffers for O_DIRECT
// reads: the page size, which covers every logical block size up to it.
const directAlign = disk.DirectAlign

// SectorSize is the unit of volume sizes: an image file whose size is taken
// from the file must be a whole number of sectors, as every device is.
const SectorSize = 512

// Open opens the volume at path, a block device or an image file. size is
// the configured size, or 0 where the configuration leaves it out.
//
//   - A block device is never created, truncated or resized: its size
//     (BLKGETSIZE64) is the volume's, and a configured size must equal it.
//     A device that is mounted or held open exclusively by another program
//     (or by another volume, under another name for the same device) is
//     refused.
//   - An existing image file must have exactly the configured size, and an
//     empty one is set to it; without a configured size, the file's own
//     size is the volume's (it must be a positive multiple of SectorSize).
//     Silently growing or cutting an image would hide a configuration
//     mistake.
//   - A missing image file is created with the configured size, and its
//     directory with it, durably (fsynced, and so are the directories whose
//     entries it adds). Without a configured size there is nothing to
//     create it with, and a missing path under /dev is a device that is not
//     there (an LVM volume not activated, a disk not attached), never an
//     image to create in the device directory: both are errors.
func Open(path string, size int64) (*Volume, error) {
	if size < 0 {
		return nil, fmt.Errorf("volume %s: size %d must be positive", path, size)
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return create(path, size)
	case err != nil:
		return nil, fmt.Errorf("volume %s: %w", path, err)
	case isBlockDevice(st.Mode()):
		return openDevice(path, size)
	case st.Mode().IsRegular():
		return openImage(path, size)
	default:
		return nil, fmt.Errorf("volume %s: a %s, neither a block device nor a regular file", path, kindOf(st.Mode()))
	}
}

func isBlockDevice(m fs.FileMode) bool {
	return m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0
}

func kindOf(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}

// ErrNoSize is returned for a missing image file that there is no size to
// create with.
var ErrNoSize = errors.New("no such file, and no configured size to create it with")

// ErrWrongSize is wrapped by the error of an image or a device whose size is
// not the volume's: what it holds is another volume's, or cut, or grown,
// and no attempt to open it again changes that.
var ErrWrongSize = errors.New("wrong size")

// wrongSize is an error that says what is wrong with a size in its own
// words and wraps ErrWrongSize.
func wrongSize(format string, args ...any) error {
	return &sizeError{fmt.Sprintf(format, args...)}
}

type sizeError struct{ msg string }

func (e *sizeError) Error() string        { return e.msg }
func (e *sizeError) Is(target error) bool { return target == ErrWrongSize }

func create(path string, size int64) (*Volume, error) {
	if abs, err := filepath.Abs(path); err == nil && strings.HasPrefix(abs, "/dev/") {
		return nil, fmt.Errorf("volume %s: no such block device (a missing path under /dev is never created as an image file)", path)
	}
	if size == 0 {
		return nil, fmt.Errorf("volume %s: %w", path, ErrNoSize)
	}
	dir := filepath.Dir(path)
	made := missingDirs(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("volume %s: %w", path, err)
	}
	// O_EXCL: what appeared meanwhile is not ours to size.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return Open(path, size)
	}
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", path, err)
	}
	if err := setSize(f, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("volume %s: %w", path, err)
	}
	// The session's configuration and state say the volume exists once
	// Open returns: a crash must not take back its name, nor those of the
	// directories made for it. Innermost first: each one's entry is in
	// the directory above it.
	for _, d := range append([]string{dir}, made...) {
		if err := syncDir(d); err != nil {
			f.Close()
			return nil, fmt.Errorf("volume %s: sync directory %s: %w", path, d, err)
		}
	}
	return newVolume(path, f, size), nil
}

// setSize sets an image's size, durably: a crash must not leave the
// volume shorter than the size it was created with.
func setSize(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("set size: %w", err)
	}
	if err := syncFile(f); err != nil {
		return fmt.Errorf("set size: fsync: %w", err)
	}
	return nil
}

// syncFile and syncDir make a file and a directory's entries durable
// (tests record them).
var (
	syncFile = (*os.File).Sync
	syncDir  = disk.OS.SyncDir
)

// missingDirs returns the parents of the directories that MkdirAll(dir)
// would create, innermost first: the directories whose entries it adds.
func missingDirs(dir string) []string {
	var parents []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			return parents
		}
		parent := filepath.Dir(d)
		if parent == d {
			return parents
		}
		parents = append(parents, parent)
	}
}

func openImage(path string, size int64) (*Volume, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("volume %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		// Replaced between the Stat and the open.
		f.Close()
		return Open(path, size)
	}
	have := st.Size()
	switch {
	case size == 0 && have == 0:
		err = fmt.Errorf("volume %s: the image is empty and no size is configured", path)
	case size == 0 && have%SectorSize != 0:
		err = wrongSize("volume %s: the image is %d bytes, not a multiple of %d: configure its size", path, have, SectorSize)
	case size == 0:
		size = have
	case have == size:
	case have == 0:
		if err = setSize(f, size); err != nil {
			err = fmt.Errorf("volume %s: %w", path, err)
		}
	default:
		err = wrongSize("volume %s: image is %d bytes, configured size is %d", path, have, size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return newVolume(path, f, size), nil
}

func newVolume(path string, f *os.File, size int64) *Volume {
	return &Volume{path: path, f: f, size: size, rc: rawConn(f)}
}

// Path returns the path of the device or image file.
func (v *Volume) Path() string { return v.path }

// Size returns the volume size in bytes.
func (v *Volume) Size() int64 { return v.size }

// Device reports whether the volume is a block device.
func (v *Volume) Device() bool { return v.device }

func (v *Volume) check(off, length int64) error {
	if off < 0 || length < 0 || off > v.size || length > v.size-off {
		return fmt.Errorf("volume %s: [%d, +%d) of %d bytes: %w", v.path, off, length, v.size, ErrOutOfRange)
	}
	return nil
}

// ReadAt fills p from off.
func (v *Volume) ReadAt(p []byte, off int64) error {
	if err := v.check(off, int64(len(p))); err != nil {
		return err
	}
	if n := v.readCached(p, off); n > 0 {
		// What the page cache did not hold is read the ordinary way.
		p, off = p[n:], off+int64(n)
		if len(p) == 0 {
			return nil
		}
	}
	n, err := v.f.ReadAt(p, off)
	if err == io.EOF && n == len(p) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("volume %s: read %d at %d: %w", v.path, len(p), off, err)
	}
	return nil
}

// ReadThrough fills p from off like ReadAt, but without leaving the range in
// the page cache: the read is for a copy to the secondary (initial copy,
// resync), not for a user who may read it again.
//
// It matters for the users' writes, not for memory: a long sequential read
// through the page cache is read ahead into large folios (2 MiB on x86), and
// every later 4 KiB write into such a folio walks all of its buffers in the
// file system, costing tens of times a write into a small one. Dropping the
// cache after each read does not help, because a folio larger than the read
// is not dropped. So the read bypasses the cache with O_DIRECT, which the
// kernel keeps coherent with buffered writes by writing back dirty pages of
// the range first. Where the file system refuses O_DIRECT it is a plain read.
func (v *Volume) ReadThrough(p []byte, off int64) error {
	if err := v.check(off, int64(len(p))); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	if f := v.directFile(); f != nil {
		err := v.readDirect(f, p, off)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("volume %s: direct read %d at %d: %w", v.path, len(p), off, err)
		}
		// The device's logical blocks are larger than directAlign, or the
		// file system takes O_DIRECT at open but not for this file.
		if v.noDirect.CompareAndSwap(false, true) {
			v.logger().Warn("volume: the file system refused a direct read; reading through the page cache from now on",
				"path", v.path, "err", err)
		}
	}
	return v.ReadAt(p, off)
}

func (v *Volume) directFile() *os.File {
	return v.openDirect(&v.direct, &v.noDirect, os.O_RDONLY, false)
}

// readDirect reads p at off through f, opened with O_DIRECT. A request that
// is not aligned goes through an aligned buffer covering it.
func (v *Volume) readDirect(f *os.File, p []byte, off int64) error {
	if off%directAlign == 0 && len(p)%directAlign == 0 && aligned(p) {
		return preadFull(f, p, off, len(p))
	}
	start := off &^ (directAlign - 1)
	end := (off + int64(len(p)) + directAlign - 1) &^ (directAlign - 1)
	b := disk.ShortBuffer(int(end - start))
	// The aligned range may reach past the end of an image whose size is not
	// a multiple of directAlign: a short read there is expected.
	if err := preadFull(f, b, start, int(off-start)+len(p)); err != nil {
		return err
	}
	copy(p, b[off-start:])
	return nil
}

// preadFull reads into b at off until at least need bytes are in or the file
// ends. A direct read is short only at the end of the file, and reading on
// from an unaligned offset there would fail, so a short read ends it. The
// reads go through f's RawConn, which holds the descriptor open for them: a
// Close meanwhile makes them fail instead of letting the number be reused
// by another file.
func preadFull(f *os.File, b []byte, off int64, need int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	got := 0
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for got < need {
			n, err := syscall.Pread(int(fd), b[got:], off+int64(got))
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				rerr = err
				return true
			}
			short := n < len(b)-got
			got += n
			if short {
				break
			}
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	if got < need {
		return fmt.Errorf("read %d of %d bytes: %w", got, need, io.ErrUnexpectedEOF)
	}
	return nil
}

func aligned(b []byte) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign == 0
}

// WriteAt writes all of p at off.
func (v *Volume) WriteAt(p []byte, off int64) error {
	if err := v.check(off, int64(len(p))); err != nil {
		return err
	}
	if _, err := v.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("volume %s: write %d at %d: %w", v.path, len(p), off, err)
	}
	return nil
}

// WriteVAt writes bufs back to back from off, with one pwritev for up to
// 1,024 of them (one pwrite for one): the secondary applies a sequential
// writer's adjacent updates this way, and every other write alone. Like
// WriteAt, the whole range is checked first.
func (v *Volume) WriteVAt(bufs [][]byte, off int64) error {
	var total int64
	for _, b := range bufs {
		total += int64(len(b))
	}
	if err := v.check(off, total); err != nil {
		return err
	}
	if _, err := disk.WriteV(v.f, bufs, off); err != nil {
		return fmt.Errorf("volume %s: write %d at %d: %w", v.path, total, off, err)
	}
	return nil
}

// ThroughMin is the shortest write WriteThrough makes direct: below it the
// copy into the page cache costs less than a direct write's round trip to
// the device, which the writer waits for.
const ThroughMin = 1 << 20

// throughChunk bounds a direct write, and the aligned buffer it is copied
// into.
const throughChunk = 4 << 20

// throughDepth is how many direct writes of one run are on the device at
// once. One at a time left the disk idle while the writer copied the next
// piece and the device's queue held a single request: this disk takes 4
// MiB direct writes about twice as fast at queue depth 2 as at 1.
const throughDepth = 4

// throughPiece is the unit a run is cut in to spread it over throughDepth
// writes: a run of 4 MiB goes as two of 2 MiB, not as one.
const throughPiece = 1 << 20

// throughBufs holds aligned buffers of throughChunk bytes between
// WriteThrough calls: a fresh one would be faulted in page by page each
// time, and a sync.Pool would drop them at every garbage collection. A
// secondary writes from one applier, which has throughDepth writes in
// flight at most.
var throughBufs = make(chan []byte, throughDepth)

// throughInPlaceMin is the shortest buffer a direct write takes from where
// it lies: a direct write pins every page of its buffers, and a short
// buffer's pages, each a segment of its own in the request, cost the
// device and the kernel more than their copy into the aligned buffer.
const throughInPlaceMin = 64 << 10

// WriteThrough writes bufs back to back from off, as WriteVAt does, but past
// the page cache (O_DIRECT) when the write is at least ThroughMin bytes and
// off and its length are multiples of directAlign: cut into pieces of up to
// throughChunk, each one vectored direct write, up to throughDepth of them
// on the device at once. It returns once every one of them is done. The
// secondary applies a sequential writer's runs this way: the copy into the
// page cache was the largest part of its CPU per applied byte, the
// writeback of those pages at its next checkpoint went to the disk beside
// the journal's, and nothing reads the pages back soon. Nothing is durable
// before Flush, as with WriteVAt: the device may hold the data in its
// volatile cache until fdatasync flushes it. The kernel keeps the page
// cache coherent, writing back and dropping cached pages of the range
// before a direct write.
//
// A buffer that lies on a block boundary in memory, is whole blocks long
// and at least throughInPlaceMin is written from where it lies: the
// secondary's frames put a sequential writer's updates so, and a primary's
// large writes are whole pages of the heap. The others are copied into an
// aligned buffer, and written from there in the same write. bufs must not
// change until WriteThrough returns. Any other write, or one the file
// system refuses direct, is WriteVAt.
func (v *Volume) WriteThrough(bufs [][]byte, off int64) error {
	var total int64
	for _, b := range bufs {
		total += int64(len(b))
	}
	if total < ThroughMin || total%directAlign != 0 || off%directAlign != 0 {
		return v.WriteVAt(bufs, off)
	}
	if err := v.check(off, total); err != nil {
		return err
	}
	f := v.directWriteFile()
	if f == nil {
		return v.WriteVAt(bufs, off)
	}
	w := throughRun{f: f, bufs: bufs, off: off, total: total, chunk: throughChunkOf(total)}
	if n := (total + w.chunk - 1) / w.chunk; n > 1 {
		helpers := min(n, throughDepth) - 1
		w.wg.Add(int(helpers))
		for range helpers {
			go func() {
				defer w.wg.Done()
				w.work()
			}()
		}
	}
	w.work()
	w.wg.Wait()
	if w.err != nil {
		return v.throughFailed(bufs, off, total, w.err)
	}
	return nil
}

// throughChunkOf is the length of the pieces a run of total bytes is
// written in: enough of them to keep throughDepth writes in flight, in
// whole throughPieces, none longer than throughChunk.
func throughChunkOf(total int64) int64 {
	c := (total + throughDepth - 1) / throughDepth
	c = (c + throughPiece - 1) / throughPiece * throughPiece
	return min(max(c, throughPiece), throughChunk)
}

// throughRun is one WriteThrough's pieces, taken in order by its writers.
type throughRun struct {
	f     *os.File
	bufs  [][]byte
	off   int64 // of the run on the volume
	total int64
	chunk int64
	wg    sync.WaitGroup

	mu   sync.Mutex
	next int64 // the run's offset of the next piece to write
	err  error // the first failed write's; no piece is taken after it
}

// take returns the next piece's offset in the run and length, or false
// once every piece is taken or a write failed.
func (w *throughRun) take() (int64, int64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || w.next >= w.total {
		return 0, 0, false
	}
	at := w.next
	n := min(w.chunk, w.total-at)
	w.next += n
	return at, n, true
}

func (w *throughRun) failed(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// work writes pieces until none is left.
func (w *throughRun) work() {
	var buf []byte // aligned, taken once a piece needs a copy
	defer func() {
		if buf != nil {
			select {
			case throughBufs <- buf:
			default:
			}
		}
	}()
	var iovs [][]byte
	for {
		at, n, ok := w.take()
		if !ok {
			return
		}
		iovs = w.piece(iovs[:0], &buf, at, n)
		_, err := directWriteV(w.f, iovs, w.off+at)
		clear(iovs)
		if err != nil {
			throughFailed(w, err)
			return
		}
	}
}

// piece appends to iovs the buffers of the direct write of the run's n
// bytes from at: the parts of bufs there, each from where it lies if it
// can be (inPlace) and the bytes before it fill whole blocks, the others
// copied back to back into *buf (taken from throughBufs first), whose
// pieces between the parts in place go in their turn. Every buffer it
// appends then starts on a block boundary in memory and on the volume,
// and all but the last are whole blocks long; n, a multiple of the block,
// makes the last so too.
func (w *throughRun) piece(iovs [][]byte, buf *[]byte, at, n int64) [][]byte {
	seg, d := 0, 0 // (*buf)[seg:d] is copied and not yet in iovs
	for _, b := range w.bufs {
		if n == 0 {
			break
		}
		if at >= int64(len(b)) {
			at -= int64(len(b))
			continue
		}
		p := b[at:]
		at = 0
		if int64(len(p)) > n {
			p = p[:n]
		}
		n -= int64(len(p))
		if d%directAlign == 0 && inPlace(p) {
			if d > seg {
				iovs = append(iovs, (*buf)[seg:d])
				seg = d
			}
			iovs = append(iovs, p)
			continue
		}
		if *buf == nil {
			select {
			case *buf = <-throughBufs:
			default:
				*buf = disk.DirectBuffer(throughChunk)
			}
		}
		d += copy((*buf)[d:], p)
	}
	if d > seg {
		iovs = append(iovs, (*buf)[seg:d])
	}
	return iovs
}

// inPlace reports whether a direct write takes p from where it lies.
func inPlace(p []byte) bool {
	return len(p) >= throughInPlaceMin && len(p)%directAlign == 0 && aligned(p)
}

// directWriteV makes one direct write of bufs back to back (tests hold
// it).
var directWriteV = func(f *os.File, bufs [][]byte, off int64) (int64, error) {
	return disk.WriteV(f, bufs, off)
}

// throughFailed records a run's failed write (tests delay it, as a
// descheduled writer does, and wait for it).
var throughFailed = (*throughRun).failed

// throughFailed is what a failed direct write of bufs at off comes to.
// EINVAL says the file system or device does not take this direct write
// (logical blocks larger than directAlign, a file system that takes
// O_DIRECT at open but not for this file): the volume writes through the
// page cache from then on, and this write is made again that way, whole,
// over what part of it the direct writes wrote.
func (v *Volume) throughFailed(bufs [][]byte, off, total int64, err error) error {
	if errors.Is(err, syscall.EINVAL) {
		if v.noDirectWrite.CompareAndSwap(false, true) {
			v.logger().Warn("volume: the file system refused a direct write although it reports direct I/O; writing through the page cache from now on",
				"path", v.path, "err", err)
		}
		return v.WriteVAt(bufs, off)
	}
	return fmt.Errorf("volume %s: direct write %d at %d: %w", v.path, total, off, err)
}

// directWriteFile is a descriptor of the volume for direct writes, or nil
// (openDirect). Only where the file system says it takes them aligned to
// directAlign (disk.TakesDirect): tmpfs takes O_DIRECT and goes through its
// page cache all the same, and a write is not worth a copy into an aligned
// buffer there.
func (v *Volume) directWriteFile() *os.File {
	return v.openDirect(&v.directW, &v.noDirectWrite, os.O_WRONLY, true)
}

// openDirect returns *f, opening the volume with flag|O_DIRECT into it on
// first use, or nil once refused is set: when the open fails, when the path
// no longer names the file the volume opened (an image moved aside and
// another put in its place, a device link pointed elsewhere: direct writes
// there would be lost to the volume and not covered by its Flush), or, if
// checked, the file system does not say it takes direct I/O aligned to
// directAlign (disk.TakesDirect). It opens without O_EXCL: the volume's own
// descriptor holds a block device exclusively, and this one is the same
// holder's.
func (v *Volume) openDirect(f **os.File, refused *atomic.Bool, flag int, checked bool) *os.File {
	if refused.Load() {
		return nil
	}
	v.directMu.Lock()
	defer v.directMu.Unlock()
	if *f == nil && !refused.Load() {
		nf, err := os.OpenFile(v.path, flag|syscall.O_DIRECT, 0)
		if err != nil {
			refused.Store(true)
			return nil
		}
		if !v.sameFile(nf) || checked && !disk.TakesDirect(nf.Fd()) {
			nf.Close()
			refused.Store(true)
			return nil
		}
		*f = nf
	}
	return *f
}

// sameFile reports whether nf is of the file the volume holds open.
func (v *Volume) sameFile(nf *os.File) bool {
	a, err := v.f.Stat()
	if err != nil {
		return false
	}
	b, err := nf.Stat()
	return err == nil && os.SameFile(a, b)
}

// Trim discards a range; it reads back as zeroes (see the package doc).
func (v *Volume) Trim(off, length int64) error {
	if err := v.check(off, length); err != nil {
		return err
	}
	return v.zero(off, length)
}

// WriteZeroes makes a range read back as zeroes.
func (v *Volume) WriteZeroes(off, length int64) error {
	if err := v.check(off, length); err != nil {
		return err
	}
	return v.zero(off, length)
}

func (v *Volume) zero(off, length int64) error {
	if length == 0 {
		return nil
	}
	if v.device {
		return v.zeroDevice(off, length, false)
	}
	err := v.control(func(fd int) error {
		return syscall.Fallocate(fd, fallocPunchHole|fallocKeepSize, off, length)
	})
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EOPNOTSUPP) {
		return fmt.Errorf("volume %s: punch hole [%d, +%d): %w", v.path, off, length, err)
	}
	// A file system without hole punching still has to read back zeroes.
	return v.writeZeroes(off, length)
}

// ZeroAllocated makes a range read back as zeroes and keeps it allocated:
// a client's WRITE_ZEROES with NBD_CMD_FLAG_NO_HOLE, after which the range
// must be fully provisioned, so that later writes there cannot fail for
// lack of space, as a punched hole would let them.
func (v *Volume) ZeroAllocated(off, length int64) error {
	if err := v.check(off, length); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	if v.device {
		return v.zeroDevice(off, length, true)
	}
	if !v.noZeroRange.Load() {
		err := v.control(func(fd int) error {
			return syscall.Fallocate(fd, fallocZeroRange|fallocKeepSize, off, length)
		})
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EOPNOTSUPP) {
			return fmt.Errorf("volume %s: zero range [%d, +%d): %w", v.path, off, length, err)
		}
		// tmpfs, for one: written zeroes are allocated too.
		v.noZeroRange.Store(true)
	}
	return v.writeZeroes(off, length)
}

// writeZeroes writes zeroes over [off, off+length).
func (v *Volume) writeZeroes(off, length int64) error {
	zero := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(zero)))
		if _, err := v.f.WriteAt(zero[:n], off); err != nil {
			return fmt.Errorf("volume %s: zero [%d, +%d): %w", v.path, off, n, err)
		}
		off += n
		length -= n
	}
	return nil
}

// control runs fn on the descriptor, held open for the call.
func (v *Volume) control(fn func(fd int) error) error {
	if v.rc == nil {
		return fn(int(v.f.Fd()))
	}
	var ferr error
	if err := v.rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// IsHole reports whether [off, off+length) is entirely a hole in the image
// file, so reads there return zeroes without any data having been written.
// A block device has no holes to ask for: every range of it is data.
func (v *Volume) IsHole(off, length int64) (bool, error) {
	if err := v.check(off, length); err != nil {
		return false, err
	}
	if v.device {
		return false, nil
	}
	const seekData = 3 // SEEK_DATA
	next, err := syscall.Seek(int(v.f.Fd()), off, seekData)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) {
			return true, nil // no data at or after off
		}
		return false, fmt.Errorf("volume %s: seek data: %w", v.path, err)
	}
	return next >= off+length, nil
}

// Flush makes every completed write durable. On a block device it writes
// back the device's page cache and flushes its volatile write cache. It is
// an fdatasync, not an fsync: an overwrite changes only the file's times,
// and fsync would wait for a commit of the file system's journal for them,
// behind every other file's metadata (the secondary's journal among them,
// whose fsyncs it then holds up); the data and what reading it back needs
// (allocation, size) are made durable either way.
func (v *Volume) Flush() error {
	if err := v.control(func(fd int) error { return ignoringEINTR(func() error { return syscall.Fdatasync(fd) }) }); err != nil {
		return fmt.Errorf("volume %s: fdatasync: %w", v.path, err)
	}
	return nil
}

// StartWriteback starts writing the volume's dirty pages back without
// waiting for them (sync_file_range, SYNC_FILE_RANGE_WRITE), and makes
// nothing durable. The secondary calls it after each group it applies, so
// that a checkpoint's Flush finds little left to write, rather than every
// page written since the last one in a burst beside the journal's fsync.
func (v *Volume) StartWriteback() error {
	const syncFileRangeWrite = 2 // SYNC_FILE_RANGE_WRITE
	if err := v.control(func(fd int) error {
		return ignoringEINTR(func() error { return syscall.SyncFileRange(fd, 0, 0, syncFileRangeWrite) })
	}); err != nil {
		return fmt.Errorf("volume %s: start writeback: %w", v.path, err)
	}
	return nil
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// Close closes the device or image file.
func (v *Volume) Close() error {
	v.directMu.Lock()
	if v.direct != nil {
		v.direct.Close()
		v.direct = nil
	}
	v.noDirect.Store(true)
	if v.directW != nil {
		v.directW.Close()
		v.directW = nil
	}
	v.noDirectWrite.Store(true)
	v.directMu.Unlock()
	if err := v.f.Close(); err != nil {
		return fmt.Errorf("volume %s: %w", v.path, err)
	}
	return nil
}
