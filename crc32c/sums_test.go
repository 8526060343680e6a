package crc32c

import (
	"math/rand/v2"
	"testing"
)

// Every range of a buffer, whatever chunks it spans and however many of
// them were added, checksums as its bytes read whole do.
func TestSumsChecksumMatchesReadingWhole(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4096+13)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for _, chunk := range []int{1, 7, 64, 512} {
		var s Sums
		s.Reset(buf, chunk)
		chunks := (len(buf) + chunk - 1) / chunk
		// None added, one, half of them, all but one, all.
		for _, upTo := range []int{0, 1, chunks / 2, chunks - 1, chunks} {
			for len(s.sums) < upTo {
				s.Add()
			}
			for range 100 {
				a := r.IntN(len(buf) + 1)
				b := a + r.IntN(len(buf)-a+1)
				if got, want := s.Checksum(buf[a:b]), Checksum(buf[a:b]); got != want {
					t.Fatalf("chunk %d, %d chunks added: [%d:%d] %#x, want %#x", chunk, upTo, a, b, got, want)
				}
			}
		}
	}
}

// A slice of another buffer, even one of equal contents, is read.
func TestSumsOutsideTheBuffer(t *testing.T) {
	buf := make([]byte, 1024)
	other := make([]byte, 1024)
	for i := range buf {
		buf[i], other[i] = byte(i), byte(i)
	}
	var s Sums
	s.Reset(buf, 64)
	for s.Add() < len(buf) {
	}
	other[500] ^= 1
	if got, want := s.Checksum(other[100:900]), Checksum(other[100:900]); got != want {
		t.Fatalf("outside: %#x, want %#x", got, want)
	}
	var none *Sums
	if got, want := none.Checksum(buf), Checksum(buf); got != want {
		t.Fatalf("nil Sums: %#x, want %#x", got, want)
	}
}
