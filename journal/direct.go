package journal

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	"duplex/disk"
)

// directAlign is the alignment of a direct write's offset, length and
// buffer. 4096 rather than the 512 most devices ask for: it is also the
// page and the file system block, so a write never covers part of one.
const directAlign = disk.DirectAlign

// maxDirectChunk bounds dbuf: a longer record is written in several
// direct writes of up to this many bytes.
const maxDirectChunk = 4 << 20

// write writes parts joined at off, the end of the active segment f, and
// returns how many of their bytes it wrote.
//
// A direct write is of whole blocks from the block boundary before off,
// its first bytes the active segment's from there (dbuf[:tail]) and its
// last zeros, so a write torn at any sector leaves the synced records
// before off as they were. It is one vectored write of pieces each a whole
// number of grains long (disk.DirectGrain), at an address that is a
// multiple of the grain: pieces of dbuf, into which the bytes are copied,
// and, from every part that lies in memory as it is to lie on the disk
// modulo the grain (inPlace; a record's gaps see to that), its whole
// grains where they are. Only the grain's bytes at either end of such a
// part are copied.
func (j *Journal) write(f disk.File, parts [][]byte, off int64) (int64, error) {
	if !j.direct {
		return disk.WriteV(f, parts, off)
	}
	n, err := j.writeDirect(f, parts, off)
	if err == nil || !errors.Is(err, syscall.EINVAL) {
		return n, err
	}
	// The file system said it takes direct writes (statx) and refused
	// one: a way of writing to give up, not a failed disk. The record is
	// written again, whole, through the page cache, over what of it the
	// direct writes before the refused one wrote; Sync's fdatasync covers
	// both, the device's cache included, as before.
	if berr := j.dropDirect(f); berr != nil {
		return 0, fmt.Errorf("%w; writing through the page cache instead failed too: %v", err, berr)
	}
	j.opts.Logger.Warn("journal: the file system refused a direct write although it reports direct I/O; writing through the page cache from now on",
		"dir", j.dir, "grain", j.refusedGrain, "err", err)
	return disk.WriteV(f, parts, off)
}

// dropDirect makes f, the active segment, written through the page cache
// from now on, and every later segment too.
func (j *Journal) dropDirect(f disk.File) error {
	if err := setBuffered(f); err != nil {
		return err
	}
	j.refused, j.refusedGrain = true, j.grain
	// Its file may reach past its records, with the zeros a direct write
	// ends with: it is cut to them before it is closed (trimLocked).
	j.direct, j.grain, j.tail, j.long, j.dbuf = false, 0, 0, true, nil
	return nil
}

// writeDirect is write of f taking direct writes.
func (j *Journal) writeDirect(f disk.File, parts [][]byte, off int64) (int64, error) {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	j.growBuf(j.tail + n)
	g, buf := j.grain, j.dbuf
	// The pieces so far cover fp bytes from base, a multiple of the
	// grain; buf[seg:d] is the piece of dbuf not yet among them. d and fp
	// agree modulo the grain: where the next byte lies in dbuf and on the
	// disk.
	base := off - int64(j.tail)
	fp, seg, d := j.tail, 0, j.tail
	iovs := j.iovs[:0]
	defer func() { clear(iovs); j.iovs = iovs[:0] }()
	flush := func() error {
		if d > seg {
			iovs = append(iovs, buf[seg:d])
		}
		if _, err := disk.WriteV(f, iovs, base); err != nil {
			return err
		}
		base += int64(fp)
		fp, seg, d = 0, 0, 0
		clear(iovs)
		iovs = iovs[:0]
		return nil
	}
	copyIn := func(p []byte) error {
		for len(p) > 0 {
			c := copy(buf[d:], p)
			d, fp, p = d+c, fp+c, p[c:]
			j.copied += int64(c)
			if d == len(buf) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, p := range parts {
		if inPlace(p, g) {
			if a := addrMod(p, g); a == d%g {
				head := (g - a) % g
				if err := copyIn(p[:head]); err != nil {
					return 0, err
				}
				if d > seg {
					iovs = append(iovs, buf[seg:d])
					seg = d
				}
				mid := (len(p) - head) / g * g
				iovs = append(iovs, p[head:head+mid])
				fp += mid
				p = p[head+mid:]
			}
		}
		if err := copyIn(p); err != nil {
			return 0, err
		}
	}
	// Zeros to the next grain in dbuf (d < len(buf), a multiple of the
	// grain, so they fit), then to the block boundary from zeroBlock.
	z := (g - d%g) % g
	clear(buf[d : d+z])
	d, fp = d+z, fp+z
	if d > seg {
		iovs = append(iovs, buf[seg:d])
		seg = d
	}
	if r := int((base + int64(fp)) % directAlign); r != 0 {
		iovs = append(iovs, zeroBlock[:directAlign-r])
	}
	if len(iovs) > 0 {
		if _, err := disk.WriteV(f, iovs, base); err != nil {
			return 0, err
		}
	}
	// The next write rewrites the bytes from the last block boundary.
	// Those of parts are taken from them; fewer than a block's, written
	// without a flush or a part in place, are where the write left them.
	j.tail = int((off + int64(n)) % directAlign)
	if n >= j.tail {
		lastBytes(buf[:j.tail], parts)
	}
	return int64(n), nil
}

// zeroBlock is a block of zeros aligned for direct writes, never written.
var zeroBlock = disk.ShortBuffer(directAlign)

// lastBytes fills dst with the last len(dst) bytes of parts joined, which
// hold at least that many.
func lastBytes(dst []byte, parts [][]byte) {
	k := len(dst)
	for i := len(parts) - 1; i >= 0 && k > 0; i-- {
		p := parts[i]
		c := min(k, len(p))
		copy(dst[k-c:k], p[len(p)-c:])
		k -= c
	}
}

// growBuf makes dbuf hold at least n bytes, up to maxDirectChunk, keeping
// its first j.tail bytes.
func (j *Journal) growBuf(n int) {
	n = min((n+directAlign-1)&^(directAlign-1), maxDirectChunk)
	if len(j.dbuf) >= n {
		return
	}
	b := disk.DirectBuffer(n)
	copy(b, j.dbuf[:j.tail])
	j.dbuf = b
}

// trimLocked cuts the active segment back to its records. A direct write
// ends at a block boundary, past the last record, with zeros; Open would
// drop them from the last segment as a torn tail, but in a segment that
// is no longer the last they would be corruption, and a journal closed
// cleanly should hold the same bytes however it was written. A recycled
// file is cut too: past its records are its earlier life's.
func (j *Journal) trimLocked() error {
	k := len(j.segs)
	if j.f == nil || k == 0 || !j.long && (!j.direct || j.tail == 0) {
		return nil
	}
	if err := j.f.Truncate(j.segs[k-1].size); err != nil {
		j.err = fmt.Errorf("journal %s: %w", j.f.Name(), err)
		return j.err
	}
	j.long = false
	return nil
}

// deviceChunk is how much of a segment Open reads at a time from its
// device.
const deviceChunk = 1 << 20

// deviceReader reads a file opened with O_DIRECT at any offset and length,
// by direct reads of whole aligned blocks into an aligned buffer: Open
// reads the last segment so (see recover).
type deviceReader struct {
	f    disk.File
	size int64  // the file's size: no read starts at or past it
	buf  []byte // deviceChunk bytes from off, n of them read
	off  int64
	n    int
}

func newDeviceReader(f disk.File, size int64) *deviceReader {
	n := min(deviceChunk, (size+directAlign-1)&^(directAlign-1))
	return &deviceReader{f: f, size: size, buf: disk.ShortBuffer(int(n))}
}

func (r *deviceReader) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		at := off + int64(done)
		if at >= r.size {
			return done, io.EOF
		}
		if at < r.off || at >= r.off+int64(r.n) {
			if err := r.fill(at); err != nil {
				return done, err
			}
		}
		done += copy(p[done:], r.buf[at-r.off:r.n])
	}
	return done, nil
}

// fill reads the chunk from the block holding at. Only a read reaching
// past the end of the file is short, and what that one says of reading on
// from an unaligned offset there (the end of the file, or EINVAL) is
// beside the point once the bytes up to the end are in.
func (r *deviceReader) fill(at int64) error {
	r.off = at &^ (directAlign - 1)
	want := int(min(int64(len(r.buf)), r.size-r.off))
	n, err := r.f.ReadAt(r.buf, r.off)
	r.n = n
	if n >= want {
		r.n = want
		return nil
	}
	if err == nil || err == io.EOF {
		// The file shrank since its size was taken.
		err = io.ErrUnexpectedEOF
	}
	return err
}
