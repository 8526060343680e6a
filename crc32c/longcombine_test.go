package crc32c

import "testing"

// zeroesSum is the CRC-32C of crc's bytes followed by n zero bytes, read
// through a small buffer so the test needs no n-byte allocation.
func zeroesSum(crc uint32, n int64) uint32 {
	buf := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(buf)))
		crc = Update(crc, buf[:k])
		n -= k
	}
	return crc
}

// TestCombineLongSecondPart: Combine is right whatever the length of the
// second part, as its doc says, including lengths of 512 MiB and more,
// which a journaled consistency group reaches (secondary.MaxGroupBytes is
// 2 GiB): the checksum of 4 bytes followed by n zero bytes combined from
// the two parts' checksums equals the checksum read through.
func TestCombineLongSecondPart(t *testing.T) {
	a := []byte("head")
	for _, n := range []int64{1<<29 - 1, 1 << 29, 1<<29 + 4097, 1<<30 + 3} {
		want := zeroesSum(Checksum(a), n)
		if got := Combine(Checksum(a), zeroesSum(0, n), n); got != want {
			t.Errorf("second part of %d bytes: Combine = %#08x, checksum read through %#08x", n, got, want)
		}
	}
}
