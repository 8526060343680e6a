package volume

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unsafe"

	"duplex/disk"
)

// Whatever a run's buffers (on block boundaries in memory or not, whole
// blocks long or not, long enough to be written in place or not), every
// piece's direct write is made of buffers each on a block boundary in
// memory and whole blocks long, that hold exactly the run's bytes of the
// piece, in order; and one taken from where it lies is at least
// throughInPlaceMin long.
func TestThroughPiecesAreWholeAlignedBlocksOfTheRun(t *testing.T) {
	mem := disk.DirectBuffer(16 << 20)
	for i := range mem {
		mem[i] = byte(i*31 + i>>12)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := []int{512, 4096, 4096 + 512, 60 << 10, 64 << 10, 64<<10 + 512, 256 << 10, 1 << 20, 1<<20 + 4096, 3 << 20}
	inPlaces := 0
	for run := range 200 {
		var bufs [][]byte
		total := 0
		for range 1 + rng.IntN(12) {
			n := lengths[rng.IntN(len(lengths))]
			at := rng.IntN(len(mem)/disk.DirectAlign-1024) * disk.DirectAlign
			if rng.IntN(3) == 0 {
				at += 512 * (1 + rng.IntN(7))
			}
			if at+n > len(mem) {
				continue
			}
			bufs = append(bufs, mem[at:at+n])
			total += n
		}
		if r := total % directAlign; r != 0 {
			// Whole blocks in all: a last buffer of the rest.
			bufs = append(bufs, mem[512:512+directAlign-r])
			total += directAlign - r
		}
		if total == 0 {
			continue
		}
		want := bytes.Join(bufs, nil)
		w := throughRun{bufs: bufs, total: int64(total), chunk: throughChunkOf(int64(total))}
		var buf []byte
		var iovs [][]byte
		var got []byte
		for at := int64(0); at < w.total; at += w.chunk {
			n := min(w.chunk, w.total-at)
			iovs = w.piece(iovs[:0], &buf, at, n)
			var pieceBytes []byte
			for _, p := range iovs {
				if !aligned(p) || len(p)%directAlign != 0 || len(p) == 0 {
					t.Fatalf("run %d, piece at %d: a buffer of %d bytes at %#x is not whole blocks on a block boundary",
						run, at, len(p), uintptr(unsafe.Pointer(unsafe.SliceData(p))))
				}
				if a := uintptr(unsafe.Pointer(unsafe.SliceData(p))); a >= uintptr(unsafe.Pointer(&mem[0])) && a < uintptr(unsafe.Pointer(&mem[0]))+uintptr(len(mem)) {
					if len(p) < throughInPlaceMin {
						t.Fatalf("run %d, piece at %d: %d bytes written in place, under throughInPlaceMin", run, at, len(p))
					}
					inPlaces++
				}
				pieceBytes = append(pieceBytes, p...)
			}
			if int64(len(pieceBytes)) != n || !bytes.Equal(pieceBytes, want[at:at+n]) {
				t.Fatalf("run %d, piece at %d of %d bytes: the write's buffers hold %d bytes, not the run's", run, at, n, len(pieceBytes))
			}
			got = append(got, pieceBytes...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("run %d: the pieces do not make up the run", run)
		}
	}
	if inPlaces == 0 {
		t.Fatal("no buffer was written in place")
	}
}
