package history

import (
	"bytes"
	"errors"
	"math/rand"
	"path/filepath"
	"testing"
)

// TestOverlay: an overlay fed the before images of each group after a past
// one, as they are applied, reads the volume as of the past group
// throughout, whatever was applied since.
func TestOverlay(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testOverlay(t, &Overlay{}) })
	t.Run("spilled", func(t *testing.T) { testOverlay(t, NewSpilledOverlay(newScratch(t, 1<<20))) })
}

func newScratch(t testing.TB, limit int64) *Scratch {
	sc, err := CreateScratch(filepath.Join(t.TempDir(), "scratch"), limit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

func testOverlay(t *testing.T, o *Overlay) {
	rng := rand.New(rand.NewSource(3))
	const size = 1 << 15
	v := &mem{make([]byte, size)}
	rng.Read(v.b)
	past := bytes.Clone(v.b)
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
			if err := o.Add(e); err != nil {
				t.Fatal(err)
			}
		}
		for _, x := range ws {
			copy(v.b[x.off:], x.data)
		}
		for r := 0; r < 20; r++ {
			off, n := rng.Intn(size-1), 1+rng.Intn(4096)
			n = min(n, size-off)
			p := bytes.Clone(v.b[off : off+n])
			if err := o.ReadOver(p, int64(off)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p, past[off:off+n]) {
				t.Fatalf("group %d: read of %d bytes at %d differs from the past content", g, n, off)
			}
		}
	}
	// The images' data, without the index: never a byte twice.
	if held := o.bytes + o.spilled; held <= 0 || held > size {
		t.Fatalf("overlay holds %d bytes of images of a %d-byte volume", held, size)
	}
	if o.spill != nil && o.bytes != 0 {
		t.Fatalf("a spilled overlay holds %d bytes of images in memory", o.bytes)
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
	for _, ch := range o.idx.chunks {
		for _, s := range ch {
			kept += int64(cap(s.data))
		}
	}
	if kept > 2*o.Bytes() {
		t.Fatalf("the Overlay counts %d bytes and keeps %d alive", o.Bytes(), kept)
	}
}

// addImage adds e to o (whatever Add returns).
func addImage(o *Overlay, e Extent) error {
	return o.Add(e)
}

// TestOverlayOutOfOrderModel: many small images, of data and of zeros, in
// no order and overlapping, over a volume: whatever the order, each byte
// reads its first image taken, in memory and spilled, through many chunk
// splits of the index.
func TestOverlayOutOfOrderModel(t *testing.T) {
	for _, spilled := range []bool{false, true} {
		rng := rand.New(rand.NewSource(5))
		const size = 1 << 20
		cur := make([]byte, size)
		rng.Read(cur)
		want := bytes.Clone(cur)
		taken := make([]bool, size)
		o := &Overlay{}
		if spilled {
			o = NewSpilledOverlay(newScratch(t, size))
		}
		for k := 0; k < 20_000; k++ {
			off, n := rng.Intn(size-512), 1+rng.Intn(512)
			e := Extent{Volume: "v", Offset: uint64(off), Length: uint64(n), Zeros: rng.Intn(4) == 0}
			img := make([]byte, n)
			if !e.Zeros {
				rng.Read(img)
				e.Data = img
			}
			for i := range n {
				if !taken[off+i] {
					taken[off+i], want[off+i] = true, img[i]
				}
			}
			if err := o.Add(e); err != nil {
				t.Fatal(err)
			}
		}
		got := bytes.Clone(cur)
		if err := o.ReadOver(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("spilled %v: the overlay over the whole volume differs from its first images", spilled)
		}
		for r := 0; r < 200; r++ {
			off, n := rng.Intn(size-1), 1+rng.Intn(8192)
			n = min(n, size-off)
			p := bytes.Clone(cur[off : off+n])
			if err := o.ReadOver(p, int64(off)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p, want[off:off+n]) {
				t.Fatalf("spilled %v: a read of %d bytes at %d differs from the first images", spilled, n, off)
			}
		}
		t.Logf("spilled %v: %d chunks, index %d KiB, data in memory %d KiB, spilled %d KiB",
			spilled, len(o.idx.chunks), o.idx.bytes>>10, o.bytes>>10, o.spilled>>10)
	}
}

// TestSpilledOverlayPastItsScratch: a spilled Overlay whose Scratch is full
// fails the Add with ErrScratchFull; it holds in memory only its index.
func TestSpilledOverlayPastItsScratch(t *testing.T) {
	sc := newScratch(t, 64<<10)
	o := NewSpilledOverlay(sc)
	var err error
	for i := uint64(0); i < 32 && err == nil; i++ {
		err = o.Add(Extent{Volume: "v", Offset: 2 * i * 4096, Length: 4096, Data: bytes.Repeat([]byte{byte(i)}, 4096)})
	}
	if !errors.Is(err, ErrScratchFull) {
		t.Fatalf("32 images of 4 KiB in a 64 KiB scratch: %v", err)
	}
	if o.bytes != 0 || o.Spilled() != 64<<10 || sc.Bytes() != 64<<10 {
		t.Fatalf("in memory %d, spilled %d, scratch %d: want 0, 64 KiB, 64 KiB", o.bytes, o.Spilled(), sc.Bytes())
	}
}
