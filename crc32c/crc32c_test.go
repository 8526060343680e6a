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

// maxFuzzCombine bounds the bytes FuzzCombine checksums: a longer input
// is taken as its first maxFuzzCombine bytes. Each input that finds new
// coverage is minimized, at a cost that grows as the square of its
// length (golang/go#51484), and Combine's loop runs once per bit of the
// second part's length, so a longer one finds "new" coverage (the
// loop's hit counts) at every power of two while covering nothing new:
// mutations reach kilobytes within seconds, and the engine then
// minimizes instead of fuzzing. Every step of Combine is taken by a
// second part under 512 bytes (a bit of its length set or not); the
// longest lengths, up to a GiB, are TestCombineLongSecondPart's.
const maxFuzzCombine = 512

func FuzzCombine(f *testing.F) {
	f.Add([]byte("abcdef"), 3)
	f.Add(make([]byte, maxFuzzCombine), 1)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		b = b[:min(len(b), maxFuzzCombine)]
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
