package recordset

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"duplex/crc32c"
)

func FuzzDecodeRecordSet(f *testing.F) {
	for _, rs := range samples() {
		// The fuzzer minimizes every new input it finds in time quadratic
		// in its size, so large seeds stall it for many seconds.
		if b := mustEncode(f, rs); len(b) <= 2048 {
			f.Add(b)
		}
	}
	empty := mustEncode(f, samples()["empty"])
	hugeN := bytes.Clone(empty)
	be.PutUint32(hugeN[offRecords:], math.MaxUint32)
	resealHeader(hugeN)
	f.Add(hugeN)
	f.Add([]byte{})
	f.Add([]byte(Magic))
	f.Add(empty[:PrefixSize])
	f.Add(bytes.Repeat([]byte{0xff}, 100))
	f.Add([]byte("DXRS\x00\x01\x00\x00\x00\x00\x00\x50\x00\x00\x00\x00garbage"))

	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		// Random bytes almost never get past the CRCs; with the lengths
		// and CRCs fixed up, mutations reach the structural checks.
		if fixed := sealed(b); fixed != nil {
			checkDecode(t, fixed)
		}
	})
}

// checkDecode asserts the properties every input must have: no panic, a
// classified error, and for what decodes, one canonical encoding.
func checkDecode(t *testing.T, b []byte) {
	rs, err := Decode(b, DefaultLimits)
	checkSummed(t, b, rs, err)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrMalformed) &&
			!errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrVersion) {
			t.Fatalf("Decode error wraps no sentinel: %v", err)
		}
		if rs != nil {
			t.Fatalf("Decode returned a record set with error %v", err)
		}
		_, _ = PeekHeader(b) // must not panic either
		return
	}
	again, err := Encode(nil, rs)
	if err != nil {
		t.Fatalf("decoded record set does not encode: %v", err)
	}
	if !bytes.Equal(again, b) {
		t.Fatalf("re-encoding differs:\n in  %x\n out %x", b, again)
	}
	if n := EncodedSize(rs); n != len(b) {
		t.Fatalf("EncodedSize = %d, input has %d bytes", n, len(b))
	}
	h, err := PeekHeader(b)
	if err != nil {
		t.Fatalf("PeekHeader rejects what Decode accepts: %v", err)
	}
	if h.Seq != rs.Seq || h.Records != len(rs.Updates) || h.Size() != len(b) ||
		h.Lowest != rs.Lowest() || h.Highest != rs.Highest() {
		t.Fatalf("PeekHeader %+v disagrees with Decode", h)
	}
}

// sealed returns a copy of b with the payload length and both CRCs made
// consistent with the header length and len(b), or nil if b is too short for
// that to make sense.
func sealed(b []byte) []byte {
	if len(b) < PrefixSize {
		return nil
	}
	h := uint64(be.Uint32(b[offHeaderLen:]))
	if h < minHeaderSize || h+crcSize > uint64(len(b)) {
		return nil
	}
	c := bytes.Clone(b)
	be.PutUint32(c[offPayloadLen:], uint32(uint64(len(c))-h-crcSize))
	resealHeader(c)
	be.PutUint32(c[len(c)-crcSize:], crcOf(c[h:len(c)-crcSize]))
	return c
}

// checkSummed asserts that b, decoded from chunk checksums taken as a
// buffer holding it was filled (at an offset within it, in small chunks so
// that updates of partMin bytes use them), decodes as Decode did: the same
// error or the same record set with the same update checksums.
func checkSummed(t *testing.T, b []byte, want *RecordSet, wantErr error) {
	t.Helper()
	checkSummedIn(t, b, 5, 64, want, wantErr)
}

// checkSummedIn is checkSummed with b at offset off of the buffer filled
// in chunks of chunk bytes.
func checkSummedIn(t *testing.T, b []byte, off, chunk int, want *RecordSet, wantErr error) {
	t.Helper()
	buf := make([]byte, off+len(b))
	var sums crc32c.Sums
	sums.Next = chunk
	done := 0
	if err := sums.Fill(buf, func(p []byte) error {
		for i := range p {
			if j := done + i - off; j >= 0 {
				p[i] = b[j]
			}
		}
		done += len(p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSummed(buf[off:], DefaultLimits, &sums)
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("DecodeSummed error %v, Decode's %v", err, wantErr)
	}
	if err != nil {
		return
	}
	if len(got.Updates) != len(want.Updates) {
		t.Fatalf("DecodeSummed: %d updates, Decode %d", len(got.Updates), len(want.Updates))
	}
	for i := range got.Updates {
		g, w := &got.Updates[i], &want.Updates[i]
		if g.sum != w.sum || g.summed != w.summed || !bytes.Equal(g.Data, w.Data) || g.Offset != w.Offset {
			t.Fatalf("update %d: DecodeSummed %+v, Decode %+v", i, g, w)
		}
	}
}

// Every sample, and each with a byte of its payload flipped, decodes from
// chunk checksums as Decode decodes it.
func TestDecodeSummedAsDecode(t *testing.T) {
	for name, rs := range samples() {
		b := mustEncode(t, rs)
		flipped := bytes.Clone(b)
		flipped[len(b)-crcSize-1] ^= 0x10
		for _, in := range [][]byte{b, flipped} {
			t.Run(name, func(t *testing.T) {
				want, err := Decode(in, DefaultLimits)
				checkSummed(t, in, want, err)
			})
		}
	}
}

// FuzzDecodeSummed decodes from the checksums of chunks of any size, the
// set at any offset of the buffer filled, as Decode does; the sets have
// updates long enough to span chunks.
func FuzzDecodeSummed(f *testing.F) {
	rs := &RecordSet{Session: "s", Subsystem: "u", Seq: 1, Group: 1, ReadTime: 1, Horizon: 100,
		Updates: []Update{
			{Volume: "a", Kind: KindWrite, Offset: 0, Length: 1100, Timestamp: 1, Seq: 1, Data: pattern(1100, 1)},
			{Volume: "a", Kind: KindWrite, Offset: 9, Length: 0, Timestamp: 2, Seq: 2, Data: []byte{}},
			{Volume: "b", Kind: KindCopy, Offset: 3, Length: 1500, Timestamp: 3, Seq: 3, Data: pattern(1500, 2)},
			{Volume: "b", Kind: KindWrite, Offset: 3, Length: 7, Timestamp: 4, Seq: 4, Data: pattern(7, 3)},
		}}
	b := mustEncode(f, rs)
	f.Add(b, uint16(64), uint8(5), uint16(0))
	f.Add(b, uint16(100), uint8(0), uint16(len(b)-10))
	f.Add(b, uint16(1), uint8(63), uint16(1500))
	f.Fuzz(func(t *testing.T, b []byte, chunk uint16, off uint8, flip uint16) {
		if len(b) > 0 {
			b = bytes.Clone(b)
			b[int(flip)%len(b)] ^= byte(flip>>8) | 1
		}
		for _, in := range [][]byte{b, sealed(b)} {
			if in == nil {
				continue
			}
			want, err := Decode(in, DefaultLimits)
			checkSummedIn(t, in, int(off), int(chunk), want, err)
		}
	})
}
