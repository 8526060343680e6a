package transport

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// Compressed record sets. A primary configured to compress sends a record
// set to a secondary that announces FeatureZstd in its link form: the plain
// encoding (recordset.Encode) where compressing would save less than a
// 32nd of it, else
//
//	off   size   field
//	0     4      magic "DXRZ" (0x44 0x58 0x52 0x5a)
//	4     1      codec: 1 zstd
//	5     3      reserved, zero
//	8     4      decoded length U: of the plain encoding
//	12    4      CRC-32C (Castagnoli) of bytes [0, 12) and [16, end)
//	16    C      one zstd frame (RFC 8878) of the plain encoding: its
//	             frame content size says U, no dictionary, a window of
//	             at most MaxZstdWindow
//
// with U greater than 16+C (a receiver rejects any other): a set that does
// not shrink goes plain. The plain encoding begins with
// "DXRS", which tells the two forms apart, so a record-set frame and every
// record set of a bundle may hold either. The record set's own CRCs, over
// its plain bytes, still protect it end to end; the CRC here lets a
// receiver discard a damaged compressed set before its decoder sees it.
//
// A receiver reads U, and the content size in the zstd frame header, before
// it allocates anything: a set whose U exceeds the largest record set it
// accepts, or a frame whose record sets would together decode to more than
// its frame limit (a bundle, decoded, stays within MaxFrame as it did
// before compression), is refused as too large; a content size other than
// U is a malformed set. It then decodes into a buffer of U bytes and no
// more, and a frame that decodes to more or less is malformed.
const (
	zstdMagic    = "DXRZ"
	codecZstd    = 1
	zstdHeadSize = 16
	// MaxZstdWindow is the largest zstd window a receiver accepts, which
	// bounds what a decoder keeps besides its output.
	MaxZstdWindow = 8 << 20
	// minCompress is the shortest record set compressed: below it the
	// header and the zstd frame cost about what they save, and a zstd
	// frame of fewer than 256 bytes carries its content size only when it
	// is a single segment, which this encoder writes only above 1 KiB.
	minCompress = 256
	// maxEncoders bounds a Compressor's encoders, and so the memory they
	// keep (about 16 MiB each at the default level), whatever the cores.
	maxEncoders = 4
)

// Zstd levels a Compressor takes, as zstd numbers them.
const (
	MinZstdLevel     = 1
	MaxZstdLevel     = 22
	DefaultZstdLevel = 3
)

// Compressor puts record sets in their link form. Safe for concurrent use.
type Compressor struct {
	enc      *zstd.Encoder
	level    int
	parallel int
}

// NewCompressor returns a Compressor at a zstd level (MinZstdLevel to
// MaxZstdLevel; 0 means DefaultZstdLevel). The library implements four
// speeds, which the levels map onto: 1-2 fastest, 3-5 default, 6-9
// better, 10-22 best.
func NewCompressor(level int) (*Compressor, error) {
	if level == 0 {
		level = DefaultZstdLevel
	}
	if level < MinZstdLevel || level > MaxZstdLevel {
		return nil, fmt.Errorf("zstd level %d not in %d..%d", level, MinZstdLevel, MaxZstdLevel)
	}
	// An encoder a core, up to maxEncoders: the mover compresses the
	// record sets of a bundle in parallel, and each encoder keeps its
	// history (twice the window) and tables once used. No zstd checksum:
	// the record set's CRCs already cover the plain bytes, and the link
	// form's the compressed.
	n := min(runtime.GOMAXPROCS(0), maxEncoders)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(n), zstd.WithWindowSize(MaxZstdWindow), zstd.WithEncoderCRC(false),
		zstd.WithZeroFrames(true))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	return &Compressor{enc: enc, level: level, parallel: n}, nil
}

// Parallel returns how many record sets the Compressor compresses at
// once; more calls of Compress at a time wait for one of them.
func (c *Compressor) Parallel() int { return c.parallel }

// Level returns the zstd level the Compressor was made with.
func (c *Compressor) Level() int { return c.level }

// Compress appends the link form of the plain record-set encoding set to
// dst: compressed if that saves at least a 32nd of it, else set itself.
// Incompressible data (already compressed or encrypted) still shrinks by
// a little, its record infos; decoding that at the secondary would cost
// more than the bytes saved.
func (c *Compressor) Compress(dst, set []byte) []byte {
	if len(set) < minCompress {
		return append(dst, set...)
	}
	start := len(dst)
	out := append(dst, make([]byte, zstdHeadSize)...)
	out = c.enc.EncodeAll(set, out)
	if len(out)-start > len(set)-len(set)/32 {
		return append(out[:start], set...)
	}
	h := out[start : start+zstdHeadSize]
	copy(h, zstdMagic)
	h[4], h[5], h[6], h[7] = codecZstd, 0, 0, 0
	binary.BigEndian.PutUint32(h[8:], uint32(len(set)))
	sum := crc32.Update(crc32.Checksum(h[:12], castagnoli), castagnoli, out[start+zstdHeadSize:])
	binary.BigEndian.PutUint32(h[12:], sum)
	return out
}

// IsCompressed reports whether a record set in its link form is compressed.
func IsCompressed(set []byte) bool {
	return len(set) >= 4 && string(set[:4]) == zstdMagic
}

// DecodedSize returns the length of the plain encoding of a record set in
// its link form, as its header declares it: checked by its CRC, not yet by
// decoding.
func DecodedSize(set []byte) (int, error) {
	if !IsCompressed(set) {
		return len(set), nil
	}
	if len(set) < zstdHeadSize {
		return 0, fmt.Errorf("compressed record set of %d bytes: %w", len(set), ErrCorrupt)
	}
	want := binary.BigEndian.Uint32(set[12:])
	if crc32.Update(crc32.Checksum(set[:12], castagnoli), castagnoli, set[zstdHeadSize:]) != want {
		return 0, fmt.Errorf("compressed record set: CRC mismatch: %w", ErrCorrupt)
	}
	if set[4] != codecZstd || set[5]|set[6]|set[7] != 0 {
		return 0, fmt.Errorf("compressed record set with codec %d, reserved % x: %w", set[4], set[5:8], ErrCorrupt)
	}
	u := binary.BigEndian.Uint32(set[8:])
	if uint64(u) <= uint64(len(set)) {
		// One link form per set: one that does not shrink goes plain.
		return 0, fmt.Errorf("compressed record set of %d bytes decoding to %d: %w", len(set), u, ErrCorrupt)
	}
	return int(u), nil
}

// Decompressor turns record sets in their link form back into their plain
// encodings, never allocating more than the largest it accepts. Safe for
// concurrent use. It decodes only whole buffers (DecodeAll), so it starts no
// goroutines and needs no closing; closing it while a connection still
// decodes would crash that one.
type Decompressor struct {
	dec    *zstd.Decoder
	maxSet int
}

// NewDecompressor returns a Decompressor of record sets of at most maxSet
// bytes, plain.
func NewDecompressor(maxSet int) (*Decompressor, error) {
	if maxSet <= 0 {
		return nil, fmt.Errorf("zstd decoder: largest record set %d", maxSet)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(uint64(maxSet)), zstd.WithDecoderMaxWindow(MaxZstdWindow),
		zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &Decompressor{dec: dec, maxSet: maxSet}, nil
}

// Expand returns the plain encoding of a record set in its link form: set
// itself when plain, else a new buffer of the length it declares. A set
// that declares more than the Decompressor's largest fails with
// ErrFrameTooLarge before anything is allocated; a damaged or malformed one
// with ErrCorrupt.
func (d *Decompressor) Expand(set []byte) ([]byte, error) {
	if !IsCompressed(set) {
		return set, nil
	}
	u, err := DecodedSize(set)
	if err != nil {
		return nil, err
	}
	if u > d.maxSet {
		return nil, fmt.Errorf("compressed record set decoding to %d bytes, more than the %d accepted: %w", u, d.maxSet, ErrFrameTooLarge)
	}
	z := set[zstdHeadSize:]
	var zh zstd.Header
	if err := zh.Decode(z); err != nil {
		return nil, fmt.Errorf("compressed record set: zstd frame header: %v: %w", err, ErrCorrupt)
	}
	switch {
	case zh.Skippable || !zh.HasFCS || zh.FrameContentSize != uint64(u):
		return nil, fmt.Errorf("compressed record set of %d bytes in a zstd frame of content size %d (known: %t, skippable: %t): %w",
			u, zh.FrameContentSize, zh.HasFCS, zh.Skippable, ErrCorrupt)
	case zh.DictionaryID != 0:
		return nil, fmt.Errorf("compressed record set: zstd dictionary %d: %w", zh.DictionaryID, ErrCorrupt)
	case !zh.SingleSegment && zh.WindowSize > MaxZstdWindow:
		return nil, fmt.Errorf("compressed record set: zstd window of %d bytes, at most %d: %w", zh.WindowSize, MaxZstdWindow, ErrCorrupt)
	}
	buf := make([]byte, 0, u)
	out, err := d.dec.DecodeAll(z, buf)
	if err != nil {
		return nil, fmt.Errorf("compressed record set: %v: %w", err, ErrCorrupt)
	}
	if len(out) != u || (u > 0 && &out[0] != &buf[:1][0]) {
		return nil, fmt.Errorf("compressed record set declaring %d bytes decoded to %d: %w", u, len(out), ErrCorrupt)
	}
	return out, nil
}

// DecodedFrameSize returns the length of a frame of the given overhead
// (its bytes besides the record sets) holding the record sets in their
// plain encodings, as their link forms declare them; a damaged one counts
// as its own length (Expand then rejects it). A receiver refuses a frame
// whose record sets would decode to more than the frames it accepts, before
// decoding any: the sender sized the frame by the plain encodings, so a
// small frame never makes the receiver hold more than a large one could.
func DecodedFrameSize(sets [][]byte, overhead int) int {
	total := overhead
	for _, s := range sets {
		n, err := DecodedSize(s)
		if err != nil {
			n = len(s)
		}
		total += n
	}
	return total
}
