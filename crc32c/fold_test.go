package crc32c

import (
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestFoldedMatchesHashCRC32 checks the folded checksum against
// hash/crc32's over every length to a few KiB, at every alignment of the
// start within 64 bytes, from several starting values, and over long
// random inputs: a wrong multiplier or lane order shows at once.
func TestFoldedMatchesHashCRC32(t *testing.T) {
	if !folding {
		t.Log("this processor does not fold; checking the fallback only")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 70000)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	starts := []uint32{0, 1, 0xffffffff, 0x12345678}
	for n := 0; n <= 3000; n++ {
		off := n % 64
		p := buf[off : off+n]
		for _, c := range starts {
			if got, want := Update(c, p), crc32.Update(c, Table, p); got != want {
				t.Fatalf("Update(%#x, %d bytes at %d) = %#x, want %#x", c, n, off, got, want)
			}
		}
		if got, want := Checksum(p), crc32.Checksum(p, Table); got != want {
			t.Fatalf("Checksum(%d bytes at %d) = %#x, want %#x", n, off, got, want)
		}
	}
	for i := 0; i < 200; i++ {
		off, n := rng.IntN(64), rng.IntN(len(buf)-64)
		p := buf[off : off+n]
		c := rng.Uint32()
		if got, want := Update(c, p), crc32.Update(c, Table, p); got != want {
			t.Fatalf("Update(%#x, %d bytes at %d) = %#x, want %#x", c, n, off, got, want)
		}
	}
}

// TestFoldedEveryLengthEveryOffset: every length to 4 KiB, the folded
// range's edges (256, 319, 320) among them, at each of the 64 offsets of
// its start within a 64-byte line, from a random starting value each.
func TestFoldedEveryLengthEveryOffset(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 4096+64)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for n := 0; n <= 4096; n++ {
		for off := 0; off < 64; off++ {
			p := buf[off : off+n]
			c := rng.Uint32()
			if got, want := Update(c, p), crc32.Update(c, Table, p); got != want {
				t.Fatalf("Update(%#x, %d bytes at %d) = %#x, want %#x", c, n, off, got, want)
			}
		}
	}
}

// TestFoldingObeysGODEBUG: the checksum guards every update and the
// journal's replay, so the hand-written folding must come out without a
// rebuild under each of x/sys/cpu's switches for what it uses.
func TestFoldingObeysGODEBUG(t *testing.T) {
	if os.Getenv("CRC32C_PRINT_FOLDING") != "" {
		fmt.Printf("folding=%v\n", folding)
		return
	}
	if !folding {
		t.Skip("this processor does not fold")
	}
	for _, sw := range []string{"cpu.avx512=off", "cpu.avx512f=off", "cpu.avx512vpclmulqdq=off", "cpu.all=off"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFoldingObeysGODEBUG$", "-test.count=1")
		cmd.Env = append(os.Environ(), "CRC32C_PRINT_FOLDING=1", "GODEBUG="+sw)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("GODEBUG=%s: %v\n%s", sw, err, out)
		}
		if !strings.Contains(string(out), "folding=false") {
			t.Errorf("GODEBUG=%s leaves the folding on:\n%s", sw, out)
		}
	}
}

// TestFoldedZeroesAndOnes covers inputs whose lanes cancel: all zero bytes
// and all 0xff, where a carry-less product lost shows as a fixed value.
func TestFoldedZeroesAndOnes(t *testing.T) {
	for _, b := range []byte{0, 0xff} {
		p := make([]byte, 8192)
		for i := range p {
			p[i] = b
		}
		for _, n := range []int{256, 320, 4096, 4097, 8192} {
			if got, want := Checksum(p[:n]), crc32.Checksum(p[:n], Table); got != want {
				t.Fatalf("Checksum(%d bytes of %#x) = %#x, want %#x", n, b, got, want)
			}
		}
	}
}

func FuzzFolded(f *testing.F) {
	f.Add(uint32(0), make([]byte, 300))
	f.Fuzz(func(t *testing.T, c uint32, p []byte) {
		if got, want := Update(c, p), crc32.Update(c, Table, p); got != want {
			t.Fatalf("Update(%#x, %d bytes) = %#x, want %#x", c, len(p), got, want)
		}
	})
}

func BenchmarkChecksum4K(b *testing.B) {
	p := make([]byte, 4096)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		Checksum(p)
	}
}

func BenchmarkChecksum4KHashCRC32(b *testing.B) {
	p := make([]byte, 4096)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		crc32.Checksum(p, Table)
	}
}

func BenchmarkChecksum1M(b *testing.B) {
	p := make([]byte, 1<<20)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		Checksum(p)
	}
}

// The secondary checksums 4 KiB updates of frames read megabytes at a
// time, from memory rather than the cache: these walk 64 MiB.
var cold = make([]byte, 64<<20)

func BenchmarkChecksum4KCold(b *testing.B) {
	b.SetBytes(4096)
	off := 0
	for b.Loop() {
		Checksum(cold[off : off+4096])
		off = (off + 4096) % len(cold)
	}
}

func BenchmarkChecksum4KColdHashCRC32(b *testing.B) {
	b.SetBytes(4096)
	off := 0
	for b.Loop() {
		crc32.Checksum(cold[off:off+4096], Table)
		off = (off + 4096) % len(cold)
	}
}

// TestFoldedAllocatesNothing: every update's data is checksummed at both
// sites, and a register spilled to the heap is an allocation each.
func TestFoldedAllocatesNothing(t *testing.T) {
	p := make([]byte, 4096)
	if n := testing.AllocsPerRun(100, func() { Checksum(p) }); n != 0 {
		t.Errorf("%.0f allocations a 4 KiB checksum, want 0", n)
	}
}
