package crc32c

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// TestCombineMatchesChecksum: the checksum of a followed by b, combined
// from theirs, is the checksum of the joined bytes, for every split of
// random strings, empty pieces included.
func TestCombineMatchesChecksum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 7, 8, 63, 64, 4096, 4097, 1 << 16, 1<<20 + 3} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		want := crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
		for _, cut := range []int{0, n / 3, n / 2, n} {
			got := Combine(Checksum(b[:cut]), Checksum(b[cut:]), int64(n-cut))
			if got != want {
				t.Fatalf("%d bytes cut at %d: Combine = %#08x, want %#08x", n, cut, got, want)
			}
		}
	}
}

func FuzzCombine(f *testing.F) {
	f.Add([]byte("abcdef"), 3)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		if cut < 0 || cut > len(b) {
			return
		}
		if got, want := Combine(Checksum(b[:cut]), Checksum(b[cut:]), int64(len(b)-cut)), Checksum(b); got != want {
			t.Fatalf("Combine = %#08x, want %#08x", got, want)
		}
	})
}

func BenchmarkCombine1M(b *testing.B) {
	for range b.N {
		Combine(0x12345678, 0x9abcdef0, 1<<20)
	}
}

func BenchmarkCombine4K(b *testing.B) {
	for range b.N {
		Combine(0x12345678, 0x9abcdef0, 4096)
	}
}
