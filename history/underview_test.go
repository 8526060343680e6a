package history

import (
	"bytes"
	"math/rand"
	"testing"
	"time"
)

// A read view of a past point is pinned at the newest group first, keeps
// the before images of the groups applied after that, and reads the
// history's undo after its point meanwhile (Overlays through the newest
// record held when it was pinned); the undo laid over what it kept
// (Under) reads the volume as of the point, for every point, steps
// included, whatever was applied while the undo was read, in memory and
// spilled, and holds each byte's image once.
func TestOverlaysOverWhatAViewKept(t *testing.T) {
	for _, spilled := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "spilled"}[spilled], func(t *testing.T) {
			rng := rand.New(rand.NewSource(4))
			l, err := Open(t.TempDir(), Options{Window: time.Hour, MaxBytes: 1 << 30})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			const size = 1 << 14
			vol := &mem{make([]byte, size)}
			rng.Read(vol.b)
			srcs := map[string]Source{"v": vol}
			type at struct {
				g uint64
				t int64
			}
			states := map[at][]byte{{}: bytes.Clone(vol.b)}
			points := []Point{{}}
			tm := int64(0)
			// group applies group g in random steps (randomSteps),
			// capturing its undo first, and keeps, in kept, the before
			// images of what it overwrites, as a read view does.
			group := func(g uint64, kept *Overlay) {
				t.Helper()
				steps, after := randomSteps(rng, vol.b, &tm)
				var ranges []Range
				for _, st := range steps {
					ranges = append(ranges, st.Ranges...)
				}
				if err := l.CaptureSteps(Header{Group: g, Time: tm}, steps, srcs); err != nil {
					t.Fatal(err)
				}
				if kept != nil {
					if err := EachBeforeImage(ranges, srcs, func(e Extent) bool {
						if err := kept.Add(e); err != nil {
							t.Fatal(err)
						}
						return true
					}); err != nil {
						t.Fatal(err)
					}
				}
				for k, st := range steps {
					p := Point{Group: g, Time: st.Time}
					states[at{p.Group, p.Time}] = after[k]
					points = append(points, p)
				}
				copy(vol.b, after[len(after)-1])
			}
			g := uint64(1)
			for ; g <= 8; g++ {
				group(g, nil)
			}
			var sc *Scratch
			if spilled {
				sc = newScratch(t, 1<<30)
			}
			for _, p := range points {
				// Pinned: the newest record held is of a group the volume
				// holds; three more groups are applied while the undo is
				// read, and the view keeps their before images.
				through, _ := l.Newest()
				kept := NewSpilledOverlay(sc)
				for range 3 {
					group(g, kept)
					g++
				}
				os, err := l.Overlays(p, through, 1<<30, sc, nil)
				if err != nil {
					t.Fatal(err)
				}
				o := os["v"]
				if o == nil {
					o = NewSpilledOverlay(sc)
				}
				if err := o.Under(kept); err != nil {
					t.Fatal(err)
				}
				b := bytes.Clone(vol.b)
				if err := o.ReadOver(b, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, states[at{p.Group, p.Time}]) {
					t.Fatalf("the undo after %+v laid over what a view kept since group %d differs from the volume at %+v", p, through.Group, p)
				}
				if held := o.bytes + o.spilled; held > size {
					t.Fatalf("the view of %+v holds %d bytes of images of a %d-byte volume", p, held, size)
				}
				if spilled && o.bytes != 0 {
					t.Fatalf("a spilled view holds %d bytes of images in memory", o.bytes)
				}
			}
			if err := NewSpilledOverlay(sc).Under(NewSpilledOverlay(newScratch(t, 1<<20))); err == nil {
				t.Fatal("an overlay laid under one of another scratch file")
			}
		})
	}
}
