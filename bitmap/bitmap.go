// Package bitmap is the change bitmap of a suspended pair: while a volume is
// not being shadowed, the primary records which regions changed instead of
// keeping the updates, so memory stays bounded however long the suspension
// lasts, and a resume copies only those regions.
//
// On disk a bitmap is: magic "DXBM", u32 version 1, u64 volume size, u64 region
// size, u64 word count W, W × u64 words (bit i of word j = region 64j+i), u32
// CRC-32C of everything before it; big-endian. Part of the on-disk format:
// never change.
package bitmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"sync"
)

// DefaultRegion is the granularity of change tracking.
const DefaultRegion = 64 << 10

const (
	magic   = "DXBM"
	version = 1
	hdrSize = 4 + 4 + 8 + 8 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is returned for a bitmap file that does not decode.
var ErrCorrupt = errors.New("bitmap corrupt")

// Bitmap marks changed regions of one volume. It is safe for concurrent use.
type Bitmap struct {
	mu     sync.Mutex
	size   int64
	region int64
	words  []uint64
	count  int
}

// New returns an empty bitmap for a volume of size bytes.
func New(size, region int64) *Bitmap {
	if region <= 0 {
		region = DefaultRegion
	}
	n := (size + region - 1) / region
	return &Bitmap{size: size, region: region, words: make([]uint64, (n+63)/64)}
}

// Size returns the volume size the bitmap covers.
func (b *Bitmap) Size() int64 { return b.size }

// Region returns the region size.
func (b *Bitmap) Region() int64 { return b.region }

func (b *Bitmap) regions() int64 { return (b.size + b.region - 1) / b.region }

// Set marks every region that [off, off+length) touches.
func (b *Bitmap) Set(off, length int64) {
	if length <= 0 || off >= b.size {
		return
	}
	end := min(off+length, b.size)
	b.mu.Lock()
	for r := off / b.region; r*b.region < end; r++ {
		w, m := r/64, uint64(1)<<(r%64)
		if b.words[w]&m == 0 {
			b.words[w] |= m
			b.count++
		}
	}
	b.mu.Unlock()
}

// SetAll marks the whole volume (a full copy).
func (b *Bitmap) SetAll() { b.Set(0, b.size) }

// Clear unmarks region r.
func (b *Bitmap) Clear(r int64) {
	b.mu.Lock()
	w, m := r/64, uint64(1)<<(r%64)
	if r >= 0 && r < b.regions() && b.words[w]&m != 0 {
		b.words[w] &^= m
		b.count--
	}
	b.mu.Unlock()
}

// Next returns the first marked region at or after r, and its byte range.
func (b *Bitmap) Next(r int64) (region, off, length int64, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for n := b.regions(); r < n; {
		w := b.words[r/64] >> (r % 64)
		if w == 0 {
			r = (r/64 + 1) * 64
			continue
		}
		r += int64(bits.TrailingZeros64(w))
		if r >= n {
			break
		}
		off = r * b.region
		return r, off, min(b.region, b.size-off), true
	}
	return 0, 0, 0, false
}

// Count returns the number of marked regions.
func (b *Bitmap) Count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count
}

// Full reports whether every region is marked.
func (b *Bitmap) Full() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(b.count) == b.regions()
}

// DirtyBytes returns the bytes covered by marked regions.
func (b *Bitmap) DirtyBytes() int64 {
	var total int64
	for r, _, l, ok := b.Next(0); ok; r, _, l, ok = b.Next(r + 1) {
		total += l
	}
	return total
}

// MarshalBinary encodes the bitmap with its CRC.
func (b *Bitmap) MarshalBinary() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]byte, 0, hdrSize+8*len(b.words)+4)
	out = append(out, magic...)
	out = binary.BigEndian.AppendUint32(out, version)
	out = binary.BigEndian.AppendUint64(out, uint64(b.size))
	out = binary.BigEndian.AppendUint64(out, uint64(b.region))
	out = binary.BigEndian.AppendUint64(out, uint64(len(b.words)))
	for _, w := range b.words {
		out = binary.BigEndian.AppendUint64(out, w)
	}
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, castagnoli)), nil
}

// Decode parses an encoded bitmap, refusing one for another volume size.
func Decode(data []byte, size int64) (*Bitmap, error) {
	if len(data) < hdrSize+4 || string(data[:4]) != magic {
		return nil, fmt.Errorf("bitmap: bad header: %w", ErrCorrupt)
	}
	n := len(data) - 4
	if crc32.Checksum(data[:n], castagnoli) != binary.BigEndian.Uint32(data[n:]) {
		return nil, fmt.Errorf("bitmap: CRC mismatch: %w", ErrCorrupt)
	}
	if v := binary.BigEndian.Uint32(data[4:]); v != version {
		return nil, fmt.Errorf("bitmap: version %d: %w", v, ErrCorrupt)
	}
	gotSize, region, words := int64(binary.BigEndian.Uint64(data[8:])), int64(binary.BigEndian.Uint64(data[16:])), binary.BigEndian.Uint64(data[24:])
	if gotSize != size {
		return nil, fmt.Errorf("bitmap: for a volume of %d bytes, not %d", gotSize, size)
	}
	if region <= 0 || region > 1<<40 {
		return nil, fmt.Errorf("bitmap: region size %d: %w", region, ErrCorrupt)
	}
	regions := (size + region - 1) / region
	if words != uint64((regions+63)/64) || uint64(n-hdrSize) != 8*words {
		return nil, fmt.Errorf("bitmap: %d words for %d regions: %w", words, regions, ErrCorrupt)
	}
	b := New(size, region)
	for i := range b.words {
		b.words[i] = binary.BigEndian.Uint64(data[hdrSize+8*i:])
		b.count += bits.OnesCount64(b.words[i])
	}
	if tail := b.regions() % 64; tail != 0 && b.words[len(b.words)-1]>>tail != 0 {
		return nil, fmt.Errorf("bitmap: bits beyond the volume: %w", ErrCorrupt)
	}
	return b, nil
}

// DecodeAnySize parses an encoded bitmap for the volume size it records: a
// bitmap kept for a volume whose size is not at hand (one left out of a
// config) is added to without being decoded for the wrong size.
func DecodeAnySize(data []byte) (*Bitmap, error) {
	if len(data) < hdrSize+4 {
		return nil, fmt.Errorf("bitmap: bad header: %w", ErrCorrupt)
	}
	return Decode(data, int64(binary.BigEndian.Uint64(data[8:])))
}

// Clone returns an independent copy of b.
func (b *Bitmap) Clone() *Bitmap {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := &Bitmap{size: b.size, region: b.region, words: make([]uint64, len(b.words)), count: b.count}
	copy(c.words, b.words)
	return c
}
