package crc32c

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// A buffer filled in pieces of any size, read from its source in reads of
// any length, gives every range of it, wherever it starts and ends, the
// checksum hash/crc32's Castagnoli table gives its bytes; those of the
// next buffer filled into the same Sums, and of one filled whole, too.
func TestSumsFillRandomPieces(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	var s Sums
	for round := range 60 {
		s.Next = []int{0, 1, 3, 512, 4096 + 1, 64 << 10, 64<<10 + 7, 1 << 20, 1 + r.IntN(200<<10)}[round%9]
		// Tiny pieces in a small buffer: a piece each byte is slow.
		limit := 600 << 10
		if s.Next > 0 {
			limit = min(limit, s.Next*1000)
		}
		buf := make([]byte, r.IntN(limit))
		src := make([]byte, len(buf))
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		done := 0
		err := s.Fill(buf, func(p []byte) error {
			for n := 0; n < len(p); {
				n += copy(p[n:min(len(p), n+1+r.IntN(9000))], src[done+n:])
			}
			done += len(p)
			return nil
		})
		if err != nil || done != len(buf) {
			t.Fatalf("Fill: %v, %d of %d bytes", err, done, len(buf))
		}
		for range 300 {
			a := r.IntN(len(buf) + 1)
			b := a + r.IntN(len(buf)-a+1)
			if r.IntN(4) == 0 && s.Next > 0 {
				a = a / s.Next * s.Next
			}
			if got, want := s.Checksum(buf[a:b]), crc32.Checksum(src[a:b], castagnoli); got != want {
				t.Fatalf("%d bytes in pieces of %d: [%d:%d] %#x, want %#x", len(buf), s.Next, a, b, got, want)
			}
		}
	}
}
