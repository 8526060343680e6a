package history

import (
	"bytes"
	"math/rand"
	"testing"
	"time"
)

// Groups captured in steps, with writes of a group over bytes an earlier
// step of it wrote: Undo, after a restart too, and Overlays take the
// volumes back to every step exactly, and a Void at a step keeps the steps
// before it as points, also once the Log is opened again.
func TestUndoToEveryStep(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	dir := t.TempDir()
	l, err := Open(dir, Options{Window: time.Hour, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 14
	vol := &mem{make([]byte, size)}
	rng.Read(vol.b)
	srcs := map[string]Source{"v": vol}
	type at struct {
		g uint64
		t int64
	}
	states := map[at][]byte{{0, 0}: bytes.Clone(vol.b)}
	var points []Point
	tm := int64(0)
	for g := uint64(1); g <= 12; g++ {
		steps, after := randomSteps(rng, vol.b, &tm)
		if err := l.CaptureSteps(Header{Group: g, Time: tm}, steps, srcs); err != nil {
			t.Fatal(err)
		}
		for k, st := range steps {
			p := Point{Group: g, Time: st.Time}
			states[at{p.Group, p.Time}] = after[k]
			points = append(points, p)
		}
		copy(vol.b, after[len(after)-1])
	}
	got := l.Points()
	if len(got) != len(points) {
		t.Fatalf("%d points, want %d (one per step)", len(got), len(points))
	}
	for i, p := range points {
		if got[i].Group != p.Group || got[i].Time != p.Time {
			t.Fatalf("point %d: %+v, want %+v", i, got[i], p)
		}
		if q, ok := l.At(p.Time); !ok || q.Group != p.Group || q.Time != p.Time {
			t.Fatalf("At(%d) = %+v, want %+v", p.Time, q, p)
		}
	}
	newest, _ := l.Newest()
	for _, p := range points {
		os, err := l.Overlays(p, newest, 1<<30, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		b := bytes.Clone(vol.b)
		if o := os["v"]; o != nil {
			o.ReadOver(b, 0)
		}
		if !bytes.Equal(b, states[at{p.Group, p.Time}]) {
			t.Fatalf("the overlay of %+v differs from the volume at that point", p)
		}
	}
	l.Close()
	// Newest first, every third point, reopened each time.
	for i := len(points) - 2; i >= 0; i -= 3 {
		p := points[i]
		l, err := Open(dir, Options{Window: time.Hour, MaxBytes: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		if !l.Beyond(p) {
			t.Fatalf("Beyond(%+v) false with later steps held", p)
		}
		if err := l.Undo(p, map[string]Sink{"v": vol}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(vol.b, states[at{p.Group, p.Time}]) {
			t.Fatalf("undo to %+v: the volume differs", p)
		}
		if err := l.Void(p); err != nil {
			t.Fatal(err)
		}
		if l.Beyond(p) {
			t.Fatalf("Beyond(%+v) after Void", p)
		}
		l.Close()
		l, err = Open(dir, Options{Window: time.Hour, MaxBytes: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		ps := l.Points()
		if len(ps) != i+1 || ps[i].Group != p.Group || ps[i].Time != p.Time {
			t.Fatalf("after Void(%+v) and Open: %d points, the last %+v; want %d", p, len(ps), ps[len(ps)-1], i+1)
		}
		if !l.Has(p.Group) {
			t.Fatalf("after Void(%+v): Has(%d) false, though the volumes hold the group through it", p, p.Group)
		}
		l.Close()
	}
}

// randomSteps makes one to four steps of a group over volume v, whose
// content is cur: each writes one to four extents, data or zeros, over what
// the steps before it wrote too, and is timed after *tm, which it moves.
// after holds v's content once each step is applied.
func randomSteps(rng *rand.Rand, cur []byte, tm *int64) (steps []Step, after [][]byte) {
	size := len(cur)
	img := bytes.Clone(cur)
	for k := rng.Intn(4); k >= 0; k-- {
		var st Step
		for n := 1 + rng.Intn(4); n > 0; n-- {
			off, ln := rng.Intn(size/2)*2, 1+rng.Intn(size/4)
			ln = min(ln, size-off)
			e := Extent{Volume: "v", Offset: uint64(off), Length: uint64(ln)}
			if rng.Intn(4) == 0 {
				e.Zeros = true
				clear(img[off : off+ln])
			} else {
				e.Data = make([]byte, ln)
				rng.Read(e.Data)
				copy(img[off:], e.Data)
			}
			st.Ranges = append(st.Ranges, Range{Volume: "v", Offset: e.Offset, Length: e.Length})
			st.Writes = append(st.Writes, e)
		}
		*tm += 1 + int64(rng.Intn(10))
		st.Time = *tm
		steps = append(steps, st)
		after = append(after, bytes.Clone(img))
	}
	return steps, after
}
