package recordset

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

var update = flag.Bool("update", false, "rewrite testdata/golden-v1.hex from the current encoder")

const goldenPath = "testdata/golden-v1.hex"

// goldenSet is pinned by testdata/golden-v1.hex: change neither.
func goldenSet() *RecordSet {
	return &RecordSet{
		Session:   "s1",
		Subsystem: "ss-a",
		Seq:       7,
		Group:     3,
		ReadTime:  1_700_000_000_000_000_000,
		Horizon:   1_700_000_000_000_000_900,
		Updates: []Update{
			{Volume: "vol0", Kind: KindWrite, Offset: 4096, Length: 4, Timestamp: 1_700_000_000_000_000_100, Seq: 41, Data: []byte("abcd")},
			{Volume: "vol1", Kind: KindZeroes, Offset: 0, Length: 8192, Timestamp: 1_700_000_000_000_000_200, Seq: 42},
			{Volume: "vol0", Kind: KindTrim, Offset: 1 << 20, Length: 1 << 16, Timestamp: 1_700_000_000_000_000_300, Seq: 43},
			{Volume: "vol1", Kind: KindCopy, Offset: 512, Length: 3, Timestamp: 1_700_000_000_000_000_400, Seq: 44, Data: []byte{0xff, 0x00, 0x7f}},
		},
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// samples are valid record sets covering the shapes the format must carry.
func samples() map[string]*RecordSet {
	m := map[string]*RecordSet{
		"golden": goldenSet(),
		"empty": {
			Session: "sess", Subsystem: "sub", Seq: 1, Group: 0, ReadTime: 5, Horizon: 1234,
		},
		"empty-negative-times": {
			Session: "sess", Subsystem: "sub", Seq: 2, Group: 9, ReadTime: -1, Horizon: math.MinInt64,
		},
		"writes": {
			Session: "prod", Subsystem: "dasd-07", Seq: 12, Group: 100, ReadTime: 99, Horizon: 1000,
			Updates: []Update{
				{Volume: "a", Kind: KindWrite, Offset: 0, Length: 512, Timestamp: 10, Seq: 1, Data: pattern(512, 1)},
				{Volume: "a", Kind: KindWrite, Offset: 512, Length: 512, Timestamp: 11, Seq: 2, Data: pattern(512, 2)},
				{Volume: "b", Kind: KindWrite, Offset: 1 << 40, Length: 4096, Timestamp: 12, Seq: 3, Data: pattern(4096, 3)},
				{Volume: "a", Kind: KindWrite, Offset: 7, Length: 1, Timestamp: 1000, Seq: 4, Data: []byte{9}},
			},
		},
		"zeroes-trims": {
			Session: "s", Subsystem: "u", Seq: 3, Group: 4, ReadTime: 0, Horizon: 50,
			Updates: []Update{
				{Volume: "z", Kind: KindZeroes, Offset: 0, Length: 1 << 30, Timestamp: -5, Seq: 7},
				{Volume: "t", Kind: KindTrim, Offset: 4096, Length: 4096, Timestamp: 0, Seq: 8},
				{Volume: "z", Kind: KindTrim, Offset: 0, Length: 0, Timestamp: 1, Seq: 9},
			},
		},
		"copies": {
			Session: "s", Subsystem: "u", Seq: 4, Group: 4, ReadTime: 0, Horizon: 50,
			Updates: []Update{
				{Volume: "c", Kind: KindCopy, Offset: 0, Length: 65536, Timestamp: 1, Seq: 1, Data: pattern(65536, 4)},
				{Volume: "c", Kind: KindCopy, Offset: 65536, Length: 0, Timestamp: 2, Seq: 2, Data: []byte{}},
				{Volume: "c", Kind: KindWrite, Offset: 3, Length: 0, Timestamp: 3, Seq: 3},
			},
		},
		"extremes": {
			Session: strings.Repeat("S", 255), Subsystem: strings.Repeat("U", 255),
			Seq: math.MaxUint64, Group: math.MaxUint64, ReadTime: math.MinInt64, Horizon: math.MaxInt64,
			Updates: []Update{
				{Volume: strings.Repeat("v", 255), Kind: KindZeroes, Offset: math.MaxUint64 - 10, Length: 10, Timestamp: math.MinInt64, Seq: math.MaxUint64},
				{Volume: "\x00\xff", Kind: KindTrim, Offset: math.MaxUint64, Length: 0, Timestamp: math.MaxInt64, Seq: 0},
			},
		},
	}
	// More volumes than the linear-scan table holds, revisited out of order.
	many := &RecordSet{Session: "s", Subsystem: "u", Seq: 5, Group: 6, Horizon: 1 << 40}
	for i := range 1000 {
		u := Update{
			Volume: fmt.Sprintf("vol%03d", (i*37)%300), Kind: KindWrite,
			Offset: uint64(i) * 512, Length: 16, Timestamp: int64(i) * 3, Seq: uint64(i),
			Data: pattern(16, byte(i)),
		}
		if i%3 == 0 {
			u.Kind, u.Data = KindZeroes, nil
		}
		many.Updates = append(many.Updates, u)
	}
	m["many-volumes"] = many
	m["markers"] = markerSet()
	return m
}

// normalized makes nil and empty Data compare equal, which Decode cannot
// tell apart, and drops the checksums Decode keeps, which are no content.
func normalized(rs *RecordSet) *RecordSet {
	c := *rs
	c.Updates = nil
	for _, u := range rs.Updates {
		if len(u.Data) == 0 {
			u.Data = nil
		}
		u.sum, u.summed = 0, false
		c.Updates = append(c.Updates, u)
	}
	return &c
}

func mustEncode(t testing.TB, rs *RecordSet) []byte {
	t.Helper()
	b, err := Encode(nil, rs)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	lim := Limits{MaxHeader: 1 << 24}
	for name, rs := range samples() {
		t.Run(name, func(t *testing.T) {
			if err := rs.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			prefix := []byte("existing")
			b, err := Encode(bytes.Clone(prefix), rs)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.HasPrefix(b, prefix) {
				t.Fatalf("Encode did not append to dst")
			}
			b = b[len(prefix):]
			if got := EncodedSize(rs); got != len(b) {
				t.Errorf("EncodedSize = %d, encoding has %d bytes", got, len(b))
			}
			if n, err := FrameSize(b[:PrefixSize], lim); err != nil || n != len(b) {
				t.Errorf("FrameSize = %d, %v; want %d", n, err, len(b))
			}
			got, err := Decode(b, lim)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(normalized(got), normalized(rs)) {
				t.Fatalf("Decode(Encode(rs)) differs from rs")
			}
			if got.DataBytes() != rs.DataBytes() || got.Lowest() != rs.Lowest() || got.Highest() != rs.Highest() {
				t.Errorf("helpers differ after round trip")
			}
			again := mustEncode(t, got)
			if !bytes.Equal(again, b) {
				t.Errorf("re-encoding differs")
			}
		})
	}
}

// TestEncodeSum: the checksum EncodeSum returns is that of the bytes it
// appended, for a set as formed (every byte read) and for the same set
// decoded (large updates' checksums combined, not read), and the
// encodings are the same; so are EncodeParts' parts joined and its
// checksum, for the set as formed and decoded, and the parts of the
// decoded set's large updates are their data where it was decoded, not
// copies.
func TestEncodeSum(t *testing.T) {
	lim := Limits{MaxHeader: 1 << 24, MaxPayload: 1 << 26}
	sets := samples()
	big := &RecordSet{Session: "sess", Subsystem: "ss", Seq: 3, Group: 3, ReadTime: 5, Horizon: 1000}
	for i, n := range []int{partMin, 100, partMin + 1, 1 << 20, 0, 3*partMin + 7, 4096, 4096, partMin - 1, 16} {
		u := Update{Volume: fmt.Sprintf("v%d", i%2), Kind: KindWrite, Offset: uint64(i) << 22, Length: uint64(n), Timestamp: int64(10 + i), Seq: uint64(i + 1), Data: pattern(n, byte(i))}
		if n == 0 {
			u.Kind, u.Length = KindZeroes, 4096
		}
		big.Updates = append(big.Updates, u)
	}
	sets["large updates"] = big
	for name, rs := range sets {
		t.Run(name, func(t *testing.T) {
			prefix := []byte("prefix")
			b, sum, err := EncodeSum(bytes.Clone(prefix), rs)
			if err != nil {
				t.Fatal(err)
			}
			if want := crc32.Checksum(b[len(prefix):], castagnoli); sum != want {
				t.Fatalf("EncodeSum of the set as formed: %#08x, want %#08x", sum, want)
			}
			got, err := Decode(b[len(prefix):], lim)
			if err != nil {
				t.Fatal(err)
			}
			again, sum2, err := EncodeSum(nil, got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, b[len(prefix):]) || sum2 != sum {
				t.Fatalf("the decoded set encodes to other bytes or checksum (%#08x, want %#08x)", sum2, sum)
			}
			for _, set := range []*RecordSet{rs, got} {
				_, parts, sum3, err := EncodeParts(bytes.Clone(prefix), set, [][]byte{[]byte("before")})
				if err != nil {
					t.Fatal(err)
				}
				if string(parts[0]) != "before" {
					t.Fatalf("EncodeParts dropped the parts given: first %q", parts[0])
				}
				if joined := bytes.Join(parts[1:], nil); !bytes.Equal(joined, b[len(prefix):]) || sum3 != sum {
					t.Fatalf("EncodeParts' parts joined differ from Encode (%d bytes, want %d) or its checksum does (%#08x, want %#08x)",
						len(joined), len(b)-len(prefix), sum3, sum)
				}
				if set != got {
					continue
				}
				inPlace := 0
				for _, p := range parts {
					for _, u := range got.Updates {
						if len(u.Data) >= partMin && len(p) == len(u.Data) && &p[0] == &u.Data[0] {
							inPlace++
						}
					}
				}
				large := 0
				for _, u := range got.Updates {
					if len(u.Data) >= partMin {
						large++
					}
				}
				if inPlace != large {
					t.Fatalf("%d of the %d updates of %d bytes or more are parts in place, want all", inPlace, large, partMin)
				}
			}
		})
	}
}

// joinSplit puts the inserts of EncodeSplit into its encoding.
func joinSplit(b []byte, ins []Insert) []byte {
	var out []byte
	at := 0
	for _, in := range ins {
		out = append(append(out, b[at:in.At]...), in.Data...)
		at = in.At
	}
	return append(out, b[at:]...)
}

// TestEncodeSplit: EncodeSplit's encoding with its inserts put in is
// Encode's, byte for byte, for every sample and for sets of large updates
// (decoded ones, whose checksums are kept, among them); it leaves out the
// data of exactly the updates of SplitMin bytes or more, aliasing it.
func TestEncodeSplit(t *testing.T) {
	lim := Limits{MaxHeader: 1 << 24, MaxPayload: 1 << 26}
	sets := samples()
	big := &RecordSet{Session: "sess", Subsystem: "ss", Seq: 3, Group: 3, ReadTime: 5, Horizon: 1000}
	for i, n := range []int{SplitMin, 100, SplitMin - 1, 1 << 20, 0, 3*SplitMin + 7, SplitMin + 1} {
		u := Update{Volume: fmt.Sprintf("v%d", i%2), Kind: KindWrite, Offset: uint64(i) << 22, Length: uint64(n), Timestamp: int64(10 + i), Seq: uint64(i + 1), Data: pattern(n, byte(i))}
		if n == 0 {
			u.Kind, u.Length = KindZeroes, 4096
		}
		big.Updates = append(big.Updates, u)
	}
	sets["large updates"] = big
	plain, err := Encode(nil, big)
	if err != nil {
		t.Fatal(err)
	}
	if sets["large updates, decoded"], err = Decode(plain, lim); err != nil {
		t.Fatal(err)
	}
	// Small writes checksummed as a primary captures them.
	small := &RecordSet{Session: "sess", Subsystem: "ss", Seq: 4, Group: 4, ReadTime: 5, Horizon: 1000}
	for i, n := range []int{4096, 100, partMin, partMin - 1, 4096} {
		u := Update{Volume: "v0", Kind: KindWrite, Offset: uint64(i) << 22, Length: uint64(n), Timestamp: int64(10 + i), Seq: uint64(i + 1), Data: pattern(n, byte(i))}
		u.Checksum()
		small.Updates = append(small.Updates, u)
	}
	sets["small updates, checksummed"] = small
	for name, rs := range sets {
		t.Run(name, func(t *testing.T) {
			prefix := []byte("prefix")
			want, err := Encode(bytes.Clone(prefix), rs)
			if err != nil {
				t.Fatal(err)
			}
			b, ins, err := EncodeSplit(bytes.Clone(prefix), []Insert{{At: 1, Data: []byte("x")}}, rs)
			if err != nil {
				t.Fatal(err)
			}
			if len(ins) == 0 || string(ins[0].Data) != "x" {
				t.Fatalf("EncodeSplit dropped the inserts it was given")
			}
			if got := joinSplit(b, ins[1:]); !bytes.Equal(got, want) {
				t.Fatalf("EncodeSplit with its inserts is %d bytes, not Encode's %d bytes", len(got), len(want))
			}
			// Left out: the large updates, and those of a known checksum
			// (decoded, checksummed) worth a piece of their own.
			var large []*Update
			for i := range rs.Updates {
				u := &rs.Updates[i]
				if len(u.Data) >= SplitMin || len(u.Data) >= partMin && strings.Contains(name, ", ") {
					large = append(large, u)
				}
			}
			if len(ins)-1 != len(large) {
				t.Fatalf("%d inserts, want one per update of at least %d bytes, or %d checksummed (%d)", len(ins)-1, SplitMin, partMin, len(large))
			}
			for i, u := range large {
				if &ins[i+1].Data[0] != &u.Data[0] || len(ins[i+1].Data) != len(u.Data) {
					t.Errorf("insert %d is not the data of update %d bytes", i, len(u.Data))
				}
			}
		})
	}
}

func TestDecodeAliasesAndShares(t *testing.T) {
	b := mustEncode(t, goldenSet())
	rs, err := Decode(b, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	u0, u2 := rs.Updates[0], rs.Updates[2]
	if unsafe.StringData(u0.Volume) != unsafe.StringData(u2.Volume) {
		t.Errorf("updates to one volume do not share the name string")
	}
	if cap(u0.Data) != len(u0.Data) {
		t.Errorf("Data cap %d, len %d: appending would clobber the next record", cap(u0.Data), len(u0.Data))
	}
	i := bytes.Index(b, []byte("abcd"))
	if i < 0 || &b[i] != &u0.Data[0] {
		t.Errorf("Data does not alias the input")
	}
}

func TestHelpers(t *testing.T) {
	rs := goldenSet()
	if got, want := rs.Lowest(), int64(1_700_000_000_000_000_100); got != want {
		t.Errorf("Lowest = %d, want %d", got, want)
	}
	if got, want := rs.Highest(), int64(1_700_000_000_000_000_400); got != want {
		t.Errorf("Highest = %d, want %d", got, want)
	}
	if got := rs.DataBytes(); got != 7 {
		t.Errorf("DataBytes = %d, want 7", got)
	}
	empty := &RecordSet{}
	if empty.Lowest() != 0 || empty.Highest() != 0 || empty.DataBytes() != 0 {
		t.Errorf("helpers of an empty set are not zero")
	}
}

func TestPeekHeader(t *testing.T) {
	for name, rs := range samples() {
		t.Run(name, func(t *testing.T) {
			b := mustEncode(t, rs)
			h, err := PeekHeader(b)
			if err != nil {
				t.Fatalf("PeekHeader: %v", err)
			}
			vols := map[string]bool{}
			for _, u := range rs.Updates {
				vols[u.Volume] = true
			}
			want := Header{
				Session: rs.Session, Subsystem: rs.Subsystem, Seq: rs.Seq, Group: rs.Group,
				ReadTime: rs.ReadTime, Horizon: rs.Horizon, Lowest: rs.Lowest(), Highest: rs.Highest(),
				Records: len(rs.Updates), Volumes: len(vols),
				HeaderLen: len(b) - rs.DataBytes() - 4, PayloadLen: rs.DataBytes(),
			}
			if h != want {
				t.Fatalf("PeekHeader = %+v\nwant %+v", h, want)
			}
			if h.Size() != len(b) {
				t.Errorf("Size = %d, want %d", h.Size(), len(b))
			}
			// The payload is not needed.
			if h2, err := PeekHeader(b[:h.HeaderLen]); err != nil || h2 != h {
				t.Errorf("PeekHeader of header only = %+v, %v", h2, err)
			}
			if _, err := PeekHeader(b[:h.HeaderLen-1]); !errors.Is(err, ErrMalformed) {
				t.Errorf("PeekHeader of short header: %v, want ErrMalformed", err)
			}
			bad := bytes.Clone(b)
			bad[offGroup] ^= 1
			if _, err := PeekHeader(bad); !errors.Is(err, ErrCorrupt) {
				t.Errorf("PeekHeader of damaged header: %v, want ErrCorrupt", err)
			}
		})
	}
}

// annotate renders an encoding as hex, one field per line with its name, so
// that the golden file documents the format and a diff shows which field
// moved. It walks b by the layout in doc.go, not by the decoder, so that it
// is an independent reading of the format.
func annotate(b []byte) string {
	var sb strings.Builder
	off := 0
	field := func(n int, name string, args ...any) []byte {
		f := b[off : off+n]
		fmt.Fprintf(&sb, "%-40x # %4d %s\n", f, off, fmt.Sprintf(name, args...))
		off += n
		return f
	}
	u16 := func(f []byte) int { return int(f[0])<<8 | int(f[1]) }
	u32 := func(f []byte) int { return u16(f)<<16 | u16(f[2:]) }

	sb.WriteString("# Golden encoding of goldenSet, format version 1. Regenerate only on\n")
	sb.WriteString("# purpose: go test ./recordset/ -run TestGolden -update\n")
	sb.WriteString("# hex                                      #  off field\n")
	field(4, "magic")
	field(2, "version")
	field(2, "flags")
	h := u32(field(4, "header length H"))
	p := u32(field(4, "payload length P"))
	field(8, "record-set sequence number")
	field(8, "time-interval group number")
	field(8, "read time")
	field(8, "horizon")
	field(8, "lowest timestamp")
	field(8, "highest timestamp")
	n := u32(field(4, "record count N"))
	v := u16(field(2, "volume-table count V"))
	s := u16(field(2, "session id length"))
	u := u16(field(2, "subsystem id length"))
	field(s, "session id %q", b[off:off+s])
	field(u, "subsystem id %q", b[off:off+u])
	for i := range v {
		l := u16(field(2, "volume %d name length", i))
		field(l, "volume %d name %q", i, b[off:off+l])
	}
	for i := range n {
		field(4, "record %d volume index", i)
		field(1, "record %d kind", i)
		field(3, "record %d reserved", i)
		field(8, "record %d offset", i)
		field(8, "record %d length", i)
		field(8, "record %d timestamp", i)
		field(8, "record %d update sequence number", i)
	}
	field(4, "header CRC-32C")
	if off != h {
		panic(fmt.Sprintf("header ends at %d, H = %d", off, h))
	}
	for off < h+p {
		field(min(16, h+p-off), "payload")
	}
	field(4, "payload CRC-32C")
	if off != len(b) {
		panic(fmt.Sprintf("%d bytes after the payload CRC", len(b)-off))
	}
	return sb.String()
}

// parseHex reads the golden file format: hex digits, whitespace and
// comments from '#' to the end of the line.
func parseHex(s string) ([]byte, error) {
	var digits strings.Builder
	for line := range strings.Lines(s) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	return hex.DecodeString(digits.String())
}

func TestGolden(t *testing.T) {
	b := mustEncode(t, goldenSet())
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, []byte(annotate(b)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := parseHex(string(text))
	if err != nil {
		t.Fatalf("%s: %v", goldenPath, err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("encoding of goldenSet no longer matches %s: the wire format changed.\ngot:\n%s", goldenPath, annotate(b))
	}
	// Old bytes must keep decoding to the same set, not just encode alike.
	rs, err := Decode(want, DefaultLimits)
	if err != nil {
		t.Fatalf("Decode(golden): %v", err)
	}
	if !reflect.DeepEqual(normalized(rs), normalized(goldenSet())) {
		t.Fatalf("Decode(golden) differs from goldenSet")
	}
}

func TestBitFlipsRejected(t *testing.T) {
	for _, name := range []string{"golden", "empty", "zeroes-trims"} {
		orig := mustEncode(t, samples()[name])
		b := bytes.Clone(orig)
		for i := range b {
			for bit := range 8 {
				b[i] ^= 1 << bit
				_, err := Decode(b, DefaultLimits)
				b[i] ^= 1 << bit

				ok := errors.Is(err, ErrCorrupt) || errors.Is(err, ErrMalformed)
				switch {
				case i >= offVersion && i < offVersion+2:
					ok = errors.Is(err, ErrVersion)
				case i >= offHeaderLen && i < offHeaderLen+8:
					// A flipped high bit of H or P is a claim the limits catch
					// before the bytes are known to be short.
					ok = ok || errors.Is(err, ErrTooLarge)
				}
				if !ok {
					t.Errorf("%s: flipping bit %d of byte %d: err = %v", name, bit, i, err)
				}
			}
		}
		if !bytes.Equal(b, orig) {
			t.Fatalf("Decode modified its input")
		}
	}
}

func TestTruncationRejected(t *testing.T) {
	for _, name := range []string{"golden", "empty", "copies"} {
		b := mustEncode(t, samples()[name])
		for n := range len(b) {
			if _, err := Decode(b[:n], DefaultLimits); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: Decode of %d of %d bytes: err = %v, want ErrMalformed", name, n, len(b), err)
			}
		}
		if _, err := Decode(append(bytes.Clone(b), 0), DefaultLimits); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: trailing byte: err = %v, want ErrMalformed", name, err)
		}
		// Two sets back to back are not one set.
		if _, err := Decode(append(bytes.Clone(b), b...), DefaultLimits); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: two sets: err = %v, want ErrMalformed", name, err)
		}
	}
}

// resealHeader recomputes the header CRC after a test has edited the header,
// so that the edit reaches the structural checks.
func resealHeader(b []byte) {
	h := int(be.Uint32(b[offHeaderLen:]))
	be.PutUint32(b[h-crcSize:], crcOf(b[:h-crcSize]))
}

func crcOf(b []byte) uint32 {
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
}

func allocatedDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestLimits(t *testing.T) {
	empty := mustEncode(t, samples()["empty"])
	golden := mustEncode(t, goldenSet())
	// edited is the empty record set as edit leaves it; resealed, with
	// its header's checksum made good again.
	edited := func(edit func(b []byte)) []byte {
		b := bytes.Clone(empty)
		edit(b)
		return b
	}
	resealed := func(edit func(b []byte)) []byte {
		b := edited(edit)
		resealHeader(b)
		return b
	}

	tests := []struct {
		name string
		b    []byte
		lim  Limits
		want error
	}{
		{name: "huge record count", b: resealed(func(b []byte) { be.PutUint32(b[offRecords:], 1<<30) }), lim: DefaultLimits, want: ErrTooLarge},
		{name: "record count beyond header", b: resealed(func(b []byte) { be.PutUint32(b[offRecords:], 1000) }), lim: DefaultLimits, want: ErrMalformed},
		{name: "volume count beyond header", b: resealed(func(b []byte) { be.PutUint16(b[offVolumes:], math.MaxUint16) }), lim: DefaultLimits, want: ErrMalformed},
		{name: "huge payload", b: edited(func(b []byte) { be.PutUint32(b[offPayloadLen:], math.MaxUint32) }), lim: DefaultLimits, want: ErrTooLarge},
		{name: "huge header", b: edited(func(b []byte) { be.PutUint32(b[offHeaderLen:], math.MaxUint32) }), lim: DefaultLimits, want: ErrTooLarge},
		{name: "records over limit", b: golden, lim: Limits{MaxRecords: 3}, want: ErrTooLarge},
		{name: "records at limit", b: golden, lim: Limits{MaxRecords: 4}},
		{name: "payload over limit", b: golden, lim: Limits{MaxPayload: 6}, want: ErrTooLarge},
		{name: "payload at limit", b: golden, lim: Limits{MaxPayload: 7}},
		{name: "header over limit", b: golden, lim: Limits{MaxHeader: len(golden) - 7 - 4 - 1}, want: ErrTooLarge},
		{name: "header at limit", b: golden, lim: Limits{MaxHeader: len(golden) - 7 - 4}},
		{name: "zero limits are defaults", b: golden, lim: Limits{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			n := allocatedDuring(func() { _, err = Decode(tt.b, tt.lim) })
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode: err = %v, want %v", err, tt.want)
			}
			if n > 64<<10 {
				t.Errorf("rejecting allocated %d bytes", n)
			}
			if tt.want == ErrTooLarge && tt.name != "records over limit" && tt.name != "huge record count" {
				// H and P are in the prefix, so a stream reader learns of
				// them before reading the rest.
				if _, err := FrameSize(tt.b[:PrefixSize], tt.lim); !errors.Is(err, ErrTooLarge) {
					t.Errorf("FrameSize: err = %v, want ErrTooLarge", err)
				}
			}
		})
	}
}

func TestFrameSize(t *testing.T) {
	b := mustEncode(t, goldenSet())
	if n, err := FrameSize(b[:PrefixSize], DefaultLimits); err != nil || n != len(b) {
		t.Fatalf("FrameSize = %d, %v; want %d", n, err, len(b))
	}
	if _, err := FrameSize(b[:PrefixSize-1], DefaultLimits); !errors.Is(err, ErrMalformed) {
		t.Errorf("short prefix: %v", err)
	}
	for _, tc := range []struct {
		off  int
		val  byte
		want error
	}{
		{offMagic, 'X', ErrMalformed},
		{offVersion + 1, 3, ErrVersion},
		{offFlags + 1, 1, ErrMalformed},
		{offFlags, 0x80, ErrMalformed},
	} {
		p := bytes.Clone(b[:PrefixSize])
		p[tc.off] = tc.val
		if _, err := FrameSize(p, DefaultLimits); !errors.Is(err, tc.want) {
			t.Errorf("byte %d = %#x: err = %v, want %v", tc.off, tc.val, err, tc.want)
		}
	}
	p := bytes.Clone(b[:PrefixSize])
	be.PutUint32(p[offHeaderLen:], minHeaderSize-1)
	if _, err := FrameSize(p, DefaultLimits); !errors.Is(err, ErrMalformed) {
		t.Errorf("header shorter than possible: %v", err)
	}
}

// TestStructuralChecks edits valid encodings in ways that keep both CRCs
// right, so that each check behind the CRCs is reached.
func TestStructuralChecks(t *testing.T) {
	golden := mustEncode(t, goldenSet())
	h, err := PeekHeader(golden)
	if err != nil {
		t.Fatal(err)
	}
	rec := h.HeaderLen - crcSize - 4*recordInfoSize // first record info
	// Volume table: "vol0" then "vol1", each 2+4 bytes.
	vt := fixedHeaderSize + len(h.Session) + len(h.Subsystem)

	reseal := func(b []byte) {
		resealHeader(b)
		be.PutUint32(b[len(b)-crcSize:], crcOf(b[h.HeaderLen:len(b)-crcSize]))
	}
	tests := []struct {
		name string
		edit func(b []byte)
	}{
		{"seq 0", func(b []byte) { be.PutUint64(b[offSeq:], 0) }},
		{"session length 0", func(b []byte) { be.PutUint16(b[offSessionLen:], 0) }},
		{"subsystem length 0", func(b []byte) { be.PutUint16(b[offSubsysLen:], 0) }},
		{"session length 256", func(b []byte) { be.PutUint16(b[offSessionLen:], 256) }},
		{"session length shifted", func(b []byte) { be.PutUint16(b[offSessionLen:], 3) }},
		{"volume count 1", func(b []byte) { be.PutUint16(b[offVolumes:], 1) }},
		{"volume count 3", func(b []byte) { be.PutUint16(b[offVolumes:], 3) }},
		{"volume name length 0", func(b []byte) { be.PutUint16(b[vt:], 0) }},
		{"volume name too long", func(b []byte) { be.PutUint16(b[vt:], 5) }},
		{"duplicate volume", func(b []byte) { b[vt+6+2+3] = '0' }},
		{"record count 3", func(b []byte) { be.PutUint32(b[offRecords:], 3) }},
		{"record count 5", func(b []byte) { be.PutUint32(b[offRecords:], 5) }},
		{"index out of range", func(b []byte) { be.PutUint32(b[rec+recordInfoSize:], 2) }},
		{"index not first use", func(b []byte) { be.PutUint32(b[rec:], 1); be.PutUint32(b[rec+recordInfoSize:], 0) }},
		{"volume unused", func(b []byte) { be.PutUint32(b[rec+recordInfoSize:], 0); be.PutUint32(b[rec+3*recordInfoSize:], 0) }},
		{"kind 0", func(b []byte) { b[rec+recordInfoSize+4] = 0 }},
		{"kind 5", func(b []byte) { b[rec+recordInfoSize+4] = 5 }},
		{"kind write without data", func(b []byte) { b[rec+recordInfoSize+4] = byte(KindWrite) }},
		{"kind zeroes with data", func(b []byte) { b[rec+4] = byte(KindZeroes) }},
		{"reserved byte", func(b []byte) { b[rec+7] = 1 }},
		{"offset overflow", func(b []byte) { be.PutUint64(b[rec+8:], math.MaxUint64-2) }},
		{"length beyond payload", func(b []byte) { be.PutUint64(b[rec+16:], 5) }},
		{"length short of payload", func(b []byte) { be.PutUint64(b[rec+16:], 3) }},
		{"timestamps equal", func(b []byte) { copy(b[rec+recordInfoSize+24:rec+recordInfoSize+32], b[rec+24:rec+32]) }},
		{"timestamps decrease", func(b []byte) { be.PutUint64(b[rec+recordInfoSize+24:], 1) }},
		{"lowest wrong", func(b []byte) { be.PutUint64(b[offLowest:], be.Uint64(b[offLowest:])-1) }},
		{"highest wrong", func(b []byte) { be.PutUint64(b[offHighest:], be.Uint64(b[offHighest:])+1) }},
		{"highest after horizon", func(b []byte) {
			be.PutUint64(b[offHorizon:], be.Uint64(b[offHighest:])-1)
		}},
		{"lowest after highest", func(b []byte) { be.PutUint64(b[offLowest:], be.Uint64(b[offHighest:])+1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(golden)
			tt.edit(b)
			reseal(b)
			if _, err := Decode(b, DefaultLimits); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}

	// An empty set must say so consistently.
	empty := mustEncode(t, samples()["empty"])
	for _, tt := range []struct {
		name string
		edit func(b []byte)
	}{
		{"lowest set", func(b []byte) { be.PutUint64(b[offLowest:], 1) }},
		{"highest set", func(b []byte) { be.PutUint64(b[offHighest:], 1) }},
		{"volumes without records", func(b []byte) { be.PutUint16(b[offVolumes:], 1) }},
	} {
		t.Run("empty/"+tt.name, func(t *testing.T) {
			b := bytes.Clone(empty)
			tt.edit(b)
			resealHeader(b)
			if _, err := Decode(b, DefaultLimits); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	tests := []struct {
		name string
		edit func(rs *RecordSet)
	}{
		{"seq 0", func(rs *RecordSet) { rs.Seq = 0 }},
		{"empty session", func(rs *RecordSet) { rs.Session = "" }},
		{"long session", func(rs *RecordSet) { rs.Session = strings.Repeat("s", 256) }},
		{"empty subsystem", func(rs *RecordSet) { rs.Subsystem = "" }},
		{"long subsystem", func(rs *RecordSet) { rs.Subsystem = strings.Repeat("u", 256) }},
		{"empty volume", func(rs *RecordSet) { rs.Updates[1].Volume = "" }},
		{"long volume", func(rs *RecordSet) { rs.Updates[3].Volume = strings.Repeat("v", 256) }},
		{"write data short", func(rs *RecordSet) { rs.Updates[0].Data = rs.Updates[0].Data[:3] }},
		{"write length short", func(rs *RecordSet) { rs.Updates[0].Length = 3 }},
		{"copy without data", func(rs *RecordSet) { rs.Updates[3].Data = nil }},
		{"zeroes with data", func(rs *RecordSet) { rs.Updates[1].Data = []byte{0} }},
		{"trim with data", func(rs *RecordSet) { rs.Updates[2].Data = make([]byte, 1<<16) }},
		{"kind 0", func(rs *RecordSet) { rs.Updates[1].Kind = 0 }},
		{"kind 5", func(rs *RecordSet) { rs.Updates[2].Kind = 5 }},
		{"timestamps equal", func(rs *RecordSet) { rs.Updates[2].Timestamp = rs.Updates[1].Timestamp }},
		{"timestamps decrease", func(rs *RecordSet) { rs.Updates[3].Timestamp = 0 }},
		{"timestamp after horizon", func(rs *RecordSet) { rs.Horizon = rs.Updates[3].Timestamp - 1 }},
		{"offset overflow", func(rs *RecordSet) { rs.Updates[2].Offset = math.MaxUint64 - rs.Updates[2].Length + 1 }},
		{"too many volumes", func(rs *RecordSet) {
			rs.Updates = make([]Update, maxVolumes+1)
			for i := range rs.Updates {
				rs.Updates[i] = Update{Volume: fmt.Sprint(i), Kind: KindTrim, Timestamp: int64(i)}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := goldenSet()
			tt.edit(rs)
			dst := []byte("keep")
			got, err := Encode(dst, rs)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Encode: err = %v, want ErrInvalid", err)
			}
			if !bytes.Equal(got, []byte("keep")) {
				t.Errorf("Encode changed dst on error: %q", got)
			}
			if verr := rs.Validate(); verr == nil || verr.Error() != err.Error() {
				t.Errorf("Validate = %v, Encode = %v", verr, err)
			}
		})
	}

	// The largest volume table does fit.
	rs := goldenSet()
	rs.Updates = make([]Update, maxVolumes)
	for i := range rs.Updates {
		rs.Updates[i] = Update{Volume: fmt.Sprint(i), Kind: KindTrim, Timestamp: int64(i)}
	}
	b := mustEncode(t, rs)
	if _, err := Decode(b, Limits{MaxHeader: len(b), MaxRecords: maxVolumes}); err != nil {
		t.Fatalf("Decode of %d volumes: %v", maxVolumes, err)
	}
}

// benchSet is the shape the benchmarks measure: 256 writes of 4 KiB, spread
// over a few volumes as a busy subsystem's sidefile would be.
func benchSet() *RecordSet {
	rs := &RecordSet{Session: "bench", Subsystem: "subsys-01", Seq: 1, Group: 1, ReadTime: 1, Horizon: 1 << 62}
	for i := range 256 {
		rs.Updates = append(rs.Updates, Update{
			Volume: fmt.Sprintf("vol%d", i%4), Kind: KindWrite,
			Offset: uint64(i) << 12, Length: 4096, Timestamp: int64(i + 1), Seq: uint64(i + 1),
			Data: pattern(4096, byte(i)),
		})
	}
	return rs
}

func BenchmarkEncode(b *testing.B) {
	rs := benchSet()
	buf := make([]byte, 0, EncodedSize(rs))
	b.SetBytes(int64(EncodedSize(rs)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = Encode(buf[:0], rs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	enc := mustEncode(b, benchSet())
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(enc, DefaultLimits); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeLarge compares encoding a record set of four 1 MiB writes,
// as 1 MiB sequential writes fill one, copied whole (Encode) and with the
// data left where it is (EncodeSplit): the checksum reads every byte either
// way; the copy is what Split saves.
func BenchmarkEncodeLarge(b *testing.B) {
	rs := &RecordSet{Session: "bench", Subsystem: "ss1", Seq: 1, Group: 1, Horizon: 1 << 40}
	for i := range 4 {
		rs.Updates = append(rs.Updates, Update{Volume: "v001", Kind: KindWrite, Offset: uint64(i) << 20, Length: 1 << 20,
			Timestamp: int64(i + 1), Seq: uint64(i + 1), Data: pattern(1<<20, byte(i))})
	}
	b.Run("copy", func(b *testing.B) {
		buf := make([]byte, 0, EncodedSize(rs))
		b.SetBytes(int64(EncodedSize(rs)))
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = Encode(buf[:0], rs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("split", func(b *testing.B) {
		var buf []byte
		var ins []Insert
		b.SetBytes(int64(EncodedSize(rs)))
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, ins, err = EncodeSplit(buf[:0], ins[:0], rs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// PayloadAt finds a plain set's payload from its prefix, where Decode's
// updates' data begins; a compressed set, another magic or a prefix too
// short has none.
func TestPayloadAt(t *testing.T) {
	rs := &RecordSet{Session: "s", Subsystem: "ss", Seq: 1, Group: 1, ReadTime: 5, Horizon: 10,
		Updates: []Update{{Volume: "v", Kind: KindWrite, Offset: 4096, Length: 8, Timestamp: 7, Seq: 1, Data: []byte("abcdefgh")}}}
	b, err := Encode(nil, rs)
	if err != nil {
		t.Fatal(err)
	}
	at, ok := PayloadAt(b[:PrefixSize])
	if !ok || string(b[at:at+8]) != "abcdefgh" {
		t.Fatalf("PayloadAt = %d, %v; the data is not there", at, ok)
	}
	got, err := Decode(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if &got.Updates[0].Data[0] != &b[at] {
		t.Fatal("the decoded update's data is not at PayloadAt")
	}
	for _, p := range [][]byte{b[:PrefixSize-1], append([]byte("DXRZ"), b[4:PrefixSize]...), nil} {
		if at, ok := PayloadAt(p); ok {
			t.Errorf("PayloadAt(% x) = %d, true", p, at)
		}
	}
}
