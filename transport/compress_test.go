package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"duplex/recordset"

	"github.com/klauspost/compress/zstd"
)

// pageSet returns the plain encoding of a record set of n writes of 4 KiB:
// database-like pages (a header, repeated rows, zero fill) when
// compressible, else random bytes.
func pageSet(t testing.TB, n int, compressible bool) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: 1, Group: 1, ReadTime: 1, Horizon: int64(n) + 1}
	for i := range n {
		data := make([]byte, 4096)
		if compressible {
			binary.BigEndian.PutUint64(data, uint64(i))
			for off := 64; off+100 < 3000; off += 100 {
				copy(data[off:], fmt.Sprintf("row %08d|customer %05d|balance %012d|status active  ", i*40+off, rng.IntN(1000), rng.IntN(1e9)))
			}
		} else {
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
		}
		rs.Updates = append(rs.Updates, recordset.Update{Volume: "db", Kind: recordset.KindWrite, Offset: uint64(i) * 4096,
			Length: 4096, Timestamp: int64(i) + 1, Seq: uint64(i) + 1, Data: data})
	}
	b, err := recordset.Encode(nil, rs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newCodec(t testing.TB, maxSet int) (*Compressor, *Decompressor) {
	t.Helper()
	c, err := NewCompressor(0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDecompressor(maxSet)
	if err != nil {
		t.Fatal(err)
	}
	return c, d
}

// A compressible record set goes compressed and comes back byte for byte;
// one that does not shrink goes plain, and its magic says so.
func TestCompressRoundTrip(t *testing.T) {
	c, d := newCodec(t, 64<<20)
	for _, tc := range []struct {
		name         string
		set          []byte
		wantCompress bool
	}{
		{"pages", pageSet(t, 64, true), true},
		{"random", pageSet(t, 64, false), false},
		{"tiny", pageSet(t, 0, true), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			link := c.Compress([]byte("prefix"), tc.set)
			if !bytes.HasPrefix(link, []byte("prefix")) {
				t.Fatalf("Compress did not append to dst")
			}
			link = link[len("prefix"):]
			if got := IsCompressed(link); got != tc.wantCompress {
				t.Fatalf("compressed = %v, want %v (%d bytes from %d)", got, tc.wantCompress, len(link), len(tc.set))
			}
			if tc.wantCompress && len(link) >= len(tc.set)/2 {
				t.Fatalf("pages compressed to %d bytes from %d", len(link), len(tc.set))
			}
			if !tc.wantCompress && !bytes.Equal(link, tc.set) {
				t.Fatalf("a set that does not shrink is not sent as it is")
			}
			if n, err := DecodedSize(link); err != nil || n != len(tc.set) {
				t.Fatalf("DecodedSize = %d, %v; want %d", n, err, len(tc.set))
			}
			got, err := d.Expand(link)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.set) {
				t.Fatalf("Expand does not give back the plain encoding")
			}
			if _, err := recordset.Decode(got, recordset.DefaultLimits); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Sets of every length round-trip, compressed where they shrink: the zstd
// frame header varies with the length (its content size takes 0 to 8
// bytes, a single segment or not), and every form that goes out must be
// one the receiver takes.
func TestCompressEveryLength(t *testing.T) {
	c, d := newCodec(t, 64<<20)
	text := bytes.Repeat([]byte("DXRS and a row of a table, "), 200)
	compressed := 0
	for n := range 2100 {
		set := text[:n]
		link := c.Compress(nil, set)
		if IsCompressed(link) {
			compressed++
		}
		got, err := d.Expand(link)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(got, set) {
			t.Fatalf("%d bytes: round trip differs", n)
		}
	}
	if compressed < 1800 {
		t.Fatalf("only %d of 2100 lengths went compressed", compressed)
	}
}

// Every single-byte change to a compressed set is caught: by its CRC
// before the decoder sees it, or, where the change makes it look plain,
// by the record set's own checks. Nothing damaged decodes.
func TestCompressedSetDamageIsDetected(t *testing.T) {
	c, d := newCodec(t, 64<<20)
	set := pageSet(t, 4, true)
	link := c.Compress(nil, set)
	if !IsCompressed(link) {
		t.Fatal("not compressed")
	}
	for i := range link {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(link)
			bad[i] ^= x
			p, err := d.Expand(bad)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("byte %d ^ %#x: %v, want ErrCorrupt", i, x, err)
				}
				continue
			}
			if IsCompressed(bad) {
				t.Fatalf("byte %d ^ %#x: a damaged compressed set expanded", i, x)
			}
			if _, err := recordset.Decode(p, recordset.DefaultLimits); err == nil {
				t.Fatalf("byte %d ^ %#x: a damaged set decoded", i, x)
			}
		}
	}
}

// linkForm wraps a zstd frame in a compressed set's header declaring u
// bytes, with a CRC that holds: what a hostile or broken sender could send.
func linkForm(u uint32, z []byte) []byte {
	b := append([]byte(zstdMagic), codecZstd, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, u)
	sum := crc32.Update(crc32.Checksum(b, castagnoli), castagnoli, z)
	b = binary.BigEndian.AppendUint32(b, sum)
	return append(b, z...)
}

// allocated returns the bytes f allocates, measured as the least the
// process allocated over several calls of f. The runtime counts allocation
// for the whole process only, so another goroutine allocating while f runs
// would count as f's; with one P, f (microseconds, no blocking) is seldom
// interrupted, and the least of several calls is f's own. What f allocates
// every time (a buffer of the declared size) still counts in full.
func allocated(f func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	least := uint64(math.MaxUint64)
	for range 8 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least
}

var allocSink []byte

// What allocated reports is what its function allocates, not what the
// process's other goroutines (a test's leftover connections, the race
// detector's, the decoder's) allocate meanwhile: a bound on it must not
// fail because another goroutine was busy.
func TestAllocatedCountsItsFunctionAlone(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var keep [][]byte
		for {
			select {
			case <-stop:
				return
			default:
			}
			keep = append(keep, make([]byte, 256))
			if len(keep) > 1024 {
				keep = nil
			}
			runtime.Gosched()
		}
	}()
	defer func() { close(stop); <-done }()
	for range 20 {
		n := allocated(func() { allocSink = make([]byte, 1000) })
		if n < 1000 || n > 2000 {
			t.Fatalf("a function allocating 1000 bytes allocated %d", n)
		}
	}
	if n := allocated(func() { allocSink = make([]byte, 1<<20) }); n < 1<<20 {
		t.Fatalf("a function allocating 1 MiB allocated %d", n)
	}
}

// A small set that declares, or expands to, far more than the receiver
// accepts is refused without the receiver allocating it: a declared size
// over the limit, a zstd content size other than the declared size, a
// frame without a content size, and a frame whose content size lies
// (declares little, its blocks make 256 MiB).
func TestExpandRefusesBombs(t *testing.T) {
	const maxSet = 1 << 20
	_, d := newCodec(t, maxSet)
	huge := make([]byte, 256<<20)
	enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(MaxZstdWindow), zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	withFCS := enc.EncodeAll(huge, nil)
	var h zstd.Header
	if err := h.Decode(withFCS); err != nil || !h.HasFCS || h.FrameContentSize != uint64(len(huge)) || h.SingleSegment {
		t.Fatalf("header %+v, %v", h, err)
	}
	// The content size is the header's last 4 bytes here (a 256 MiB frame
	// with a window descriptor: FCS field of 4 bytes after magic,
	// descriptor and window byte).
	lying := bytes.Clone(withFCS)
	binary.LittleEndian.PutUint32(lying[6:], 70000)
	if err := h.Decode(lying); err != nil || h.FrameContentSize != 70000 {
		t.Fatalf("forged header %+v, %v", h, err)
	}
	var stream bytes.Buffer
	w, err := zstd.NewWriter(&stream, zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(huge)
	w.Close()
	if err := h.Decode(stream.Bytes()); err != nil || h.HasFCS {
		t.Fatalf("streamed header %+v, %v", h, err)
	}
	huge = nil
	for _, tc := range []struct {
		name string
		set  []byte
		want error
	}{
		{"declares 1 GiB", linkForm(1<<30, withFCS), ErrFrameTooLarge},
		{"declares 4 GiB-1", linkForm(1<<32-1, withFCS[:100]), ErrFrameTooLarge},
		{"declares little, content size 256 MiB", linkForm(70000, withFCS), ErrCorrupt},
		{"no content size", linkForm(70000, stream.Bytes()), ErrCorrupt},
		{"content size lies", linkForm(70000, lying), ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.set) > 64<<10 {
				t.Fatalf("bomb of %d bytes is not small", len(tc.set))
			}
			var err error
			n := allocated(func() { _, err = d.Expand(tc.set) })
			if !errors.Is(err, tc.want) {
				t.Fatalf("Expand: %v, want %v", err, tc.want)
			}
			// At most the declared 70000 bytes and the decoder's window.
			if n > MaxZstdWindow+4<<20 {
				t.Fatalf("refusing it allocated %d bytes", n)
			}
		})
	}
	t.Run("declared over the limit allocates next to nothing", func(t *testing.T) {
		set := linkForm(1<<30, withFCS)
		if n := allocated(func() { d.Expand(set) }); n > 4<<10 {
			t.Fatalf("refusing it allocated %d bytes", n)
		}
	})
}

// A frame's record sets are held, decoded, to the frame limit before any
// is decoded: a bundle of small sets each declaring the most a set may be
// decodes to far more than one frame, and is refused by its declared size.
func TestDecodedFrameSize(t *testing.T) {
	c, _ := newCodec(t, 64<<20)
	set := pageSet(t, 8, true)
	link := c.Compress(nil, set)
	plain := pageSet(t, 1, false)
	if got, want := DecodedFrameSize([][]byte{link, plain, []byte("DXRZ damaged")}, 10), 10+len(set)+len(plain)+12; got != want {
		t.Fatalf("DecodedFrameSize = %d, want %d", got, want)
	}
	bombs := make([][]byte, 100)
	for i := range bombs {
		bombs[i] = linkForm(64<<20, link[zstdHeadSize:])
	}
	if got := DecodedFrameSize(bombs, 0); got != 100*64<<20 {
		t.Fatalf("DecodedFrameSize of bombs = %d", got)
	}
}

// FuzzExpand: Expand never panics, classifies its errors, never returns
// more than the largest set it accepts, and what it returns from a
// compressed set has the declared length.
func FuzzExpand(f *testing.F) {
	c, err := NewCompressor(0)
	if err != nil {
		f.Fatal(err)
	}
	set := pageSet(f, 2, true)
	link := c.Compress(nil, set)
	f.Add(link)
	f.Add(link[:zstdHeadSize+4])
	f.Add(pageSet(f, 0, true))
	f.Add(linkForm(1<<30, link[zstdHeadSize:]))
	f.Add(linkForm(100, link[zstdHeadSize:]))
	f.Add([]byte(zstdMagic))
	const maxSet = 1 << 20
	d, err := NewDecompressor(maxSet)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(b []byte) {
			p, err := d.Expand(b)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("Expand error wraps no sentinel: %v", err)
				}
				return
			}
			if !IsCompressed(b) {
				if !bytes.Equal(p, b) {
					t.Fatalf("a plain set changed")
				}
				return
			}
			if n, _ := DecodedSize(b); len(p) != n || n > maxSet {
				t.Fatalf("expanded to %d bytes, declared %d, limit %d", len(p), n, maxSet)
			}
		}
		check(b)
		// Random bytes rarely pass the CRC: with it fixed, mutations reach
		// the size checks and the decoder.
		if IsCompressed(b) && len(b) >= zstdHeadSize {
			check(linkForm(binary.BigEndian.Uint32(b[8:]), b[zstdHeadSize:]))
		}
	})
}

// goldenZstdSet is the plain record set testdata/recordset-zstd.hex holds
// compressed: change neither.
func goldenZstdSet(t testing.TB) []byte {
	rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: 1, Group: 1, ReadTime: 1, Horizon: 2,
		Updates: []recordset.Update{{Volume: "db", Kind: recordset.KindWrite, Offset: 0, Length: 512, Timestamp: 1, Seq: 1,
			Data: bytes.Repeat([]byte("row|"), 128)}}}
	b, err := recordset.Encode(nil, rs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A compressed record set is pinned byte for byte. The decoding half
// holds for good: every receiver reads what was ever sent. The encoding
// half pins this zstd library's output too; a library that compresses
// differently changes the file on purpose, in a commit that says so.
func TestGoldenCompressedSet(t *testing.T) {
	want := readGolden(t, "testdata/recordset-zstd.hex")
	c, d := newCodec(t, 64<<20)
	plain := goldenZstdSet(t)
	if got := c.Compress(nil, plain); !bytes.Equal(got, want) {
		t.Fatalf("the compressed set no longer matches: the link form changed\n got %x\nwant %x", got, want)
	}
	got, err := d.Expand(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("Expand(golden) is not the plain set")
	}
}

// A secondary that takes compressed record sets says so in the features
// section of its Welcome, pinned here; a Welcome without the bit (every
// secondary from before compression) gets plain record sets only.
func TestGoldenWelcomeFeaturesZstd(t *testing.T) {
	want := readGolden(t, "testdata/welcome-features-zstd.hex")
	p := goldenPosition()
	p.Features = FeatureBundles | FeatureZstd
	if got := EncodePosition(TypeWelcome, p); !bytes.Equal(got, want) {
		t.Fatalf("the Welcome encoding no longer matches: the wire format changed\n got %x\nwant %x", got, want)
	}
	got, err := DecodePosition(mustOpen(t, want, TypeWelcome))
	if err != nil {
		t.Fatal(err)
	}
	if got.Features != FeatureBundles|FeatureZstd {
		t.Fatalf("features %#x", got.Features)
	}
	old, err := DecodePosition(mustOpen(t, readGolden(t, "testdata/welcome-features.hex"), TypeWelcome))
	if err != nil {
		t.Fatal(err)
	}
	if old.Features&FeatureZstd != 0 {
		t.Fatalf("a secondary of before announces zstd")
	}
}
