package recordset

import (
	"bytes"
	"errors"
	"math"
	"testing"
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
