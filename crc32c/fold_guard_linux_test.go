package crc32c

import (
	"hash/crc32"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
)

// TestFoldedStaysInsideItsSlice checksums slices that end where an
// inaccessible page begins and slices that start where one ends: a load
// past either end of the input, which a vector loop rounding its length up
// would make, faults here instead of reading a neighbour's bytes.
func TestFoldedStaysInsideItsSlice(t *testing.T) {
	ps := os.Getpagesize()
	const pages = 3
	mem, err := syscall.Mmap(-1, 0, (pages+2)*ps, syscall.PROT_NONE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatalf("mapping guarded pages: %v", err)
	}
	defer syscall.Munmap(mem)
	body := mem[ps : (pages+1)*ps]
	if err := syscall.Mprotect(body, syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
		t.Fatalf("opening the pages between the guards: %v", err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	for n := 0; n <= len(body); n++ {
		c := rng.Uint32()
		for _, p := range [][]byte{body[len(body)-n:], body[:n]} {
			if got, want := Update(c, p), crc32.Update(c, Table, p); got != want {
				t.Fatalf("Update(%#x, %d bytes against a guard page) = %#x, want %#x", c, n, got, want)
			}
		}
	}
}
