package journal

import (
	"fmt"
	"io"

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
func (j *Journal) write(f disk.File, parts [][]byte, off int64) (int64, error) {
	if !j.direct {
		return disk.WriteV(f, parts, off)
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	j.growBuf(j.tail + n)
	// base is where dbuf[0] goes; dbuf[:j.tail] are the bytes already
	// there, rewritten unchanged, so a write torn at any sector leaves the
	// synced records before off as they were.
	base := off - int64(j.tail)
	pos := j.tail
	var written int64
	flush := func() error {
		end := (pos + directAlign - 1) &^ (directAlign - 1)
		clear(j.dbuf[pos:end])
		if _, err := f.WriteAt(j.dbuf[:end], base); err != nil {
			return err
		}
		return nil
	}
	for _, p := range parts {
		for len(p) > 0 {
			c := copy(j.dbuf[pos:], p)
			pos += c
			p = p[c:]
			if pos == len(j.dbuf) {
				if err := flush(); err != nil {
					return written, err
				}
				written += int64(pos - j.tail)
				base += int64(pos)
				pos, j.tail = 0, 0
			}
		}
	}
	if pos > j.tail {
		if err := flush(); err != nil {
			return written, err
		}
		written += int64(pos - j.tail)
	}
	keep := pos % directAlign
	copy(j.dbuf, j.dbuf[pos-keep:pos])
	j.tail = keep
	return written, nil
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
