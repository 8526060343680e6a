package crc32c

import "unsafe"

// Sums holds the checksums of a buffer's successive chunks, taken as the
// buffer was filled, each while its bytes were still in the processor's
// cache. A range of the buffer spanning whole chunks is then checksummed
// from theirs (Combine) and only its ends are read again. The secondary
// fills a frame from the socket this way: checksummed later, a frame of
// several MiB is read back from memory at a fifth of the speed the
// checksum runs at from the cache, and that read was a quarter of the
// secondary's CPU under sustained 1 MiB writes (bench/RESULTS.md).
type Sums struct {
	// Next is the chunk size of the next buffer filled (Fill); 0: none
	// is checksummed as it is filled. Its owner sets it between fills.
	Next int

	buf   []byte
	chunk int
	sums  []uint32
}

// Reset starts the chunk checksums of buf, chunks of chunk bytes from its
// start (0: none).
func (s *Sums) Reset(buf []byte, chunk int) {
	s.buf, s.chunk, s.sums = buf, chunk, s.sums[:0]
}

// Fill reads buf whole with read (io.ReadFull's), a chunk of Next bytes
// at a time, each checksummed as soon as it is read; with Next 0, all at
// once and none.
func (s *Sums) Fill(buf []byte, read func([]byte) error) error {
	s.Reset(buf, s.Next)
	if s.chunk <= 0 {
		return read(buf)
	}
	for off := 0; off < len(buf); {
		if err := read(buf[off:min(off+s.chunk, len(buf))]); err != nil {
			return err
		}
		off = s.Add()
	}
	return nil
}

// Add checksums the next chunk of the buffer, which must hold its bytes
// by now, and returns how many bytes of the buffer the chunks cover.
func (s *Sums) Add() int {
	off := len(s.sums) * s.chunk
	end := min(off+s.chunk, len(s.buf))
	s.sums = append(s.sums, Checksum(s.buf[off:end]))
	return end
}

// Forget lets go of the buffer.
func (s *Sums) Forget() { s.buf, s.sums = nil, s.sums[:0] }

// Checksum is the CRC-32C of p. Where p lies in the buffer and spans a
// chunk whose checksum was added, only its bytes outside such chunks are
// read.
func (s *Sums) Checksum(p []byte) uint32 {
	if s == nil || s.chunk <= 0 || len(p) < 2*s.chunk {
		return Checksum(p)
	}
	// Addresses compared, never turned back into pointers: a p outside
	// the buffer wraps around to an offset past its end.
	off := int(uintptr(unsafe.Pointer(unsafe.SliceData(p))) - uintptr(unsafe.Pointer(unsafe.SliceData(s.buf))))
	if off < 0 || off > len(s.buf)-len(p) {
		return Checksum(p)
	}
	end := off + len(p)
	first := (off + s.chunk - 1) / s.chunk // the first chunk wholly in p
	last := min(end/s.chunk, len(s.sums))  // past the last one added
	if last <= first {
		return Checksum(p)
	}
	crc := Checksum(s.buf[off : first*s.chunk])
	for _, c := range s.sums[first:last] {
		crc = Combine(crc, c, int64(s.chunk))
	}
	return Update(crc, s.buf[last*s.chunk:end])
}
