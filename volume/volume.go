// Package volume is a block device image kept in a regular file: the storage
// devices of the primary and the secondary storage subsystems of the method.
//
// Every request is bounds-checked against the volume's size, so a request that
// reaches past the end is an error, never a short write that leaves half an
// update on disk. Trim and WriteZeroes punch holes, so a discarded range costs
// no space and reads back as zeroes.
package volume

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrOutOfRange is returned for a request that does not lie inside the volume.
var ErrOutOfRange = errors.New("request out of range")

// Linux fallocate modes (not exported by package syscall).
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
)

// Volume is an open image file of a fixed size. It is safe for concurrent use:
// requests are positioned reads and writes.
type Volume struct {
	path string
	f    *os.File
	size int64

	// direct is a second descriptor opened with O_DIRECT on first use by
	// ReadThrough; noDirect is set once the file system refuses it.
	directMu sync.Mutex
	direct   *os.File
	noDirect atomic.Bool

	// rc is f's RawConn, for the calls that cannot block (fast_linux.go);
	// noNowait is set once the file system refuses them.
	rc       syscall.RawConn
	noNowait atomic.Bool
}

// directAlign is the alignment of offsets, lengths and buffers for O_DIRECT
// reads: the page size, which covers every logical block size up to it.
const directAlign = 4096

// Open opens the image at path, creating it with the given size if it does not
// exist. An existing image must have exactly that size: silently growing or
// cutting a volume would hide a configuration mistake.
func Open(path string, size int64) (*Volume, error) {
	if size <= 0 {
		return nil, fmt.Errorf("volume %s: size %d must be positive", path, size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("volume %s: %w", path, err)
	}
	switch st.Size() {
	case size:
	case 0:
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, fmt.Errorf("volume %s: set size: %w", path, err)
		}
	default:
		f.Close()
		return nil, fmt.Errorf("volume %s: image is %d bytes, configured size is %d", path, st.Size(), size)
	}
	return &Volume{path: path, f: f, size: size, rc: rawConn(f)}, nil
}

// Path returns the image file's path.
func (v *Volume) Path() string { return v.path }

// Size returns the volume size in bytes.
func (v *Volume) Size() int64 { return v.size }

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
		v.noDirect.Store(true)
	}
	return v.ReadAt(p, off)
}

func (v *Volume) directFile() *os.File {
	if v.noDirect.Load() {
		return nil
	}
	v.directMu.Lock()
	defer v.directMu.Unlock()
	if v.direct == nil && !v.noDirect.Load() {
		f, err := os.OpenFile(v.path, os.O_RDONLY|syscall.O_DIRECT, 0)
		if err != nil {
			v.noDirect.Store(true)
			return nil
		}
		v.direct = f
	}
	return v.direct
}

// readDirect reads p at off through f, opened with O_DIRECT. A request that
// is not aligned goes through an aligned buffer covering it.
func (v *Volume) readDirect(f *os.File, p []byte, off int64) error {
	if off%directAlign == 0 && len(p)%directAlign == 0 && aligned(p) {
		return preadFull(f, p, off, len(p))
	}
	start := off &^ (directAlign - 1)
	end := (off + int64(len(p)) + directAlign - 1) &^ (directAlign - 1)
	b := alignedBuffer(int(end - start))
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

func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign)) % directAlign
	return b[skip : skip+n : skip+n]
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
// iovMax of them: the secondary applies a sequential writer's adjacent
// updates this way. Like WriteAt, the whole range is checked first.
func (v *Volume) WriteVAt(bufs [][]byte, off int64) error {
	var total int64
	for _, b := range bufs {
		total += int64(len(b))
	}
	if err := v.check(off, total); err != nil {
		return err
	}
	rc, err := v.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("volume %s: write %d at %d: %w", v.path, total, off, err)
	}
	bufs = append([][]byte(nil), bufs...) // stepped over below; the caller's stay
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), iovMax)]
		var n int
		var werr error
		cerr := rc.Write(func(fd uintptr) bool {
			for {
				n, werr = unix.Pwritev(int(fd), chunk, off)
				if werr != unix.EINTR {
					return true
				}
			}
		})
		if cerr != nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("volume %s: write %d at %d: %w", v.path, total, off, werr)
		}
		if n == 0 && chunkLen(chunk) > 0 {
			return fmt.Errorf("volume %s: write %d at %d: %w", v.path, total, off, io.ErrShortWrite)
		}
		// Step over what was written; a short write goes on from the
		// middle of a buffer.
		off += int64(n)
		for len(bufs) > 0 && (n > 0 || len(bufs[0]) == 0) {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
	return nil
}

func chunkLen(bufs [][]byte) (n int) {
	for _, b := range bufs {
		n += len(b)
	}
	return n
}

// iovMax is the most buffers one pwritev takes (IOV_MAX on Linux).
const iovMax = 1024

// Trim discards a range; it reads back as zeroes.
func (v *Volume) Trim(off, length int64) error {
	if err := v.check(off, length); err != nil {
		return err
	}
	return v.punch(off, length)
}

// WriteZeroes makes a range read back as zeroes.
func (v *Volume) WriteZeroes(off, length int64) error {
	if err := v.check(off, length); err != nil {
		return err
	}
	return v.punch(off, length)
}

func (v *Volume) punch(off, length int64) error {
	if length == 0 {
		return nil
	}
	err := syscall.Fallocate(int(v.f.Fd()), fallocPunchHole|fallocKeepSize, off, length)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EOPNOTSUPP) {
		return fmt.Errorf("volume %s: punch hole [%d, +%d): %w", v.path, off, length, err)
	}
	// A file system without hole punching still has to read back zeroes.
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

// IsHole reports whether [off, off+length) is entirely a hole in the image
// file, so reads there return zeroes without any data having been written.
func (v *Volume) IsHole(off, length int64) (bool, error) {
	if err := v.check(off, length); err != nil {
		return false, err
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

// Flush makes every completed write durable.
func (v *Volume) Flush() error {
	if err := v.f.Sync(); err != nil {
		return fmt.Errorf("volume %s: fsync: %w", v.path, err)
	}
	return nil
}

// Close closes the image file.
func (v *Volume) Close() error {
	v.directMu.Lock()
	if v.direct != nil {
		v.direct.Close()
		v.direct = nil
	}
	v.noDirect.Store(true)
	v.directMu.Unlock()
	if err := v.f.Close(); err != nil {
		return fmt.Errorf("volume %s: %w", v.path, err)
	}
	return nil
}
