package transport

import (
	"bytes"
	"testing"

	"duplex/crc32c"
	"duplex/recordset"
)

// The in-memory link reads a frame in checksummed pieces as TCP does, so
// that the receivers' tests of frames damaged on the link take the same
// path: the pieces' checksums are those of the bytes as received (a byte
// changed afterwards is not seen in them), and a record set damaged on the
// link is refused from them.
func TestMemFillsFrameSums(t *testing.T) {
	for _, alloc := range []bool{false, true} {
		n := NewMemNetwork(1, Faults{})
		p, s := memPair(t, n)
		fs, ok := s.(FrameSums)
		if !ok {
			t.Fatalf("%T does not implement FrameSums", s)
		}
		if alloc {
			s.(FrameBuffers).SetFrameAlloc(func(n int) []byte { return make([]byte, n+100) })
		}
		sums := &crc32c.Sums{Next: 64 << 10}
		fs.SetFrameSums(sums)
		want := patterned(300<<10+7, 5)
		if err := p.Send(want); err != nil {
			t.Fatal(err)
		}
		got := recvTimeout(t, s)
		if !bytes.Equal(got, want) {
			t.Fatal("frame differs")
		}
		got[200<<10] ^= 1
		if sum, read := sums.Checksum(got[10:]), crc32c.Checksum(want[10:]); sum != read {
			t.Fatalf("alloc %t: pieces' checksum %#x, want that of the frame as received %#x", alloc, sum, read)
		}
		sums.Next = 0
		if err := p.Send(want); err != nil {
			t.Fatal(err)
		}
		got = recvTimeout(t, s)
		got[200<<10] ^= 1
		if sum, read := sums.Checksum(got[10:]), crc32c.Checksum(got[10:]); sum != read {
			t.Fatalf("alloc %t, read whole: %#x, want %#x", alloc, sum, read)
		}
	}

	n := NewMemNetwork(1, Faults{Corrupt: 1})
	p, s := memPair(t, n)
	sums := &crc32c.Sums{Next: 64 << 10}
	s.(FrameSums).SetFrameSums(sums)
	good := sumsFrame(t)
	for range 50 {
		if err := p.Send(good); err != nil {
			t.Fatal(err)
		}
		f := recvTimeout(t, s)
		if bytes.Equal(f, good) {
			t.Fatal("frame not damaged")
		}
		typ, body, err := Open(f)
		if err == nil && typ == TypeRecordSet {
			_, err = recordset.DecodeSummed(body, recordset.DefaultLimits, sums)
		}
		if err == nil {
			t.Fatal("a record set damaged on the link decoded from its pieces' checksums")
		}
	}
}
