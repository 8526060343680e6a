package history

import (
	"bytes"
	"math/rand"
	"testing"
)

// TestOverlay: an overlay fed the before images of each group after a past
// one, as they are applied, reads the volume as of the past group
// throughout, whatever was applied since.
func TestOverlay(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	const size = 1 << 15
	v := &mem{make([]byte, size)}
	rng.Read(v.b)
	past := bytes.Clone(v.b)
	var o Overlay
	srcs := map[string]Source{"v": v}
	for g := 0; g < 50; g++ {
		var ranges []Range
		type w struct {
			off  int
			data []byte
		}
		var ws []w
		for k := rng.Intn(4); k >= 0; k-- {
			off, n := rng.Intn(size-2048), 1+rng.Intn(2048)
			d := make([]byte, n)
			if rng.Intn(3) > 0 {
				rng.Read(d)
			}
			ws = append(ws, w{off, d})
			ranges = append(ranges, Range{"v", uint64(off), uint64(n)})
		}
		es, err := ReadBeforeImages(ranges, srcs)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			o.Add(e)
		}
		for _, x := range ws {
			copy(v.b[x.off:], x.data)
		}
		for r := 0; r < 20; r++ {
			off, n := rng.Intn(size-1), 1+rng.Intn(4096)
			n = min(n, size-off)
			p := bytes.Clone(v.b[off : off+n])
			o.ReadOver(p, int64(off))
			if !bytes.Equal(p, past[off:off+n]) {
				t.Fatalf("group %d: read of %d bytes at %d differs from the past content", g, n, off)
			}
		}
	}
	// The images' data, without the index: never a byte twice.
	if o.bytes <= 0 || o.bytes > size {
		t.Fatalf("overlay holds %d bytes of images of a %d-byte volume", o.bytes, size)
	}
}

// TestOverlayKeepsOnlyWhatItCounts: an image of which the Overlay takes a
// small part is not kept whole through the part: what it holds in memory
// stays within what Bytes reports, however many such images it is fed.
func TestOverlayKeepsOnlyWhatItCounts(t *testing.T) {
	const chunk = 64 << 10
	var o Overlay
	o.Add(Extent{Volume: "v", Offset: 1 << 20, Length: chunk, Data: make([]byte, chunk)})
	// Each image reaches one new byte below what the Overlay holds.
	for i := uint64(1); i <= 64; i++ {
		off := 1<<20 - i
		o.Add(Extent{Volume: "v", Offset: off, Length: chunk, Data: make([]byte, chunk)})
	}
	var kept int64
	for _, s := range o.segs {
		kept += int64(cap(s.data))
	}
	if kept > 2*o.Bytes() {
		t.Fatalf("the Overlay counts %d bytes and keeps %d alive", o.Bytes(), kept)
	}
}

// addImage adds e to o (whatever Add returns).
func addImage(o *Overlay, e Extent) error {
	o.Add(e)
	return nil
}
