package history

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mem is a volume in memory.
type mem struct{ b []byte }

func (m *mem) ReadAt(p []byte, off int64) error { copy(p, m.b[off:]); return nil }
func (m *mem) WriteAt(p []byte, off int64) error {
	copy(m.b[off:], p)
	return nil
}
func (m *mem) WriteZeroes(off, n int64) error { clear(m.b[off : off+n]); return nil }
func (m *mem) Flush() error                   { return nil }

func docExample() *Record {
	return &Record{Kind: KindUndo, Group: 7, Time: 1, Last: true,
		Extents: []Extent{{Volume: "v", Offset: 512, Length: 2, Data: []byte("hi")}}}
}

// TestDocExample checks the worked example of the package doc.
func TestDocExample(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(src), "is the 61 bytes")
	j := strings.Index(string(src), "# Compatibility")
	want, err := hex.DecodeString(strings.Join(strings.Fields(string(src[i+len("is the 61 bytes"):j])), ""))
	if err != nil {
		t.Fatal(err)
	}
	got, err := docExample().Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding\n got %x\nwant %x", got, want)
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "undo-v1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(golden, want) {
		t.Fatalf("testdata/undo-v1.bin differs from the doc's example")
	}
	r, err := Decode(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, docExample()) {
		t.Fatalf("decoded %+v", r)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []*Record{
		docExample(),
		{Kind: KindVoid, Group: 3},
		{Kind: KindUndo, Group: 1 << 40, Time: -5, Part: 3, MidBatch: true, State: []byte(`{"v":1}`),
			Extents: []Extent{{Volume: "a", Offset: 0, Length: 1 << 30, Zeros: true}, {Volume: strings.Repeat("n", MaxName), Offset: 9, Length: 3, Data: []byte{1, 2, 3}}}},
	} {
		b, err := r.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Extents) == 0 && len(r.Extents) == 0 {
			got.Extents = r.Extents
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
		}
		for n := 0; n < len(b); n++ {
			if _, err := Decode(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("cut at %d of %d: err = %v, want ErrMalformed", n, len(b), err)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := docExample().Encode(nil)
	f.Add(b)
	v, _ := (&Record{Kind: KindVoid, Group: 3}).Encode(nil)
	f.Add(v)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := r.Encode(nil)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("decode then encode changed the bytes:\n%x\n%x", data, again)
		}
	})
}

// model applies random groups to volumes through a Log, keeping the
// volumes' content after every group, and checks that Undo takes them back
// to each point exactly.
func TestUndoToEveryPoint(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	dir := t.TempDir()
	l, err := Open(dir, Options{Window: time.Hour, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 16
	vols := map[string]*mem{"a": {make([]byte, size)}, "b": {make([]byte, size)}}
	states := map[uint64]map[string][]byte{}
	snapshot := func() map[string][]byte {
		s := map[string][]byte{}
		for n, v := range vols {
			s[n] = bytes.Clone(v.b)
		}
		return s
	}
	srcs := map[string]Source{"a": vols["a"], "b": vols["b"]}
	states[0] = snapshot()
	for g := uint64(1); g <= 40; g++ {
		var ranges []Range
		type w struct {
			vol  string
			off  int
			data []byte
			zero bool
		}
		var ws []w
		for k := rng.Intn(5); k >= 0; k-- {
			vol := []string{"a", "b"}[rng.Intn(2)]
			off, n := rng.Intn(size-4096), 1+rng.Intn(4096)
			x := w{vol: vol, off: off, data: make([]byte, n), zero: rng.Intn(5) == 0}
			rng.Read(x.data)
			ws = append(ws, x)
			ranges = append(ranges, Range{vol, uint64(off), uint64(n)})
		}
		if err := l.Capture(Header{Group: g, Time: int64(g) * 10, State: []byte{byte(g)}}, ranges, srcs); err != nil {
			t.Fatal(err)
		}
		for _, x := range ws {
			if x.zero {
				clear(vols[x.vol].b[x.off : x.off+len(x.data)])
			} else {
				copy(vols[x.vol].b[x.off:], x.data)
			}
		}
		states[g] = snapshot()
	}
	if !l.Has(40) || l.Has(41) {
		t.Fatalf("Has(40) = %v, Has(41) = %v", l.Has(40), l.Has(41))
	}
	if p, ok := l.At(255); !ok || p.Group != 25 || p.Time != 250 || !bytes.Equal(p.State, []byte{25}) {
		t.Fatalf("At(255) = %+v, %v", p, ok)
	}
	if _, ok := l.At(9); ok {
		t.Fatalf("At(9) found a point before the oldest")
	}
	// Laid over the volumes as they are, the Overlays of a group read
	// them as of that group.
	// Spilled to a Scratch, the same.
	sc, err := CreateScratch(filepath.Join(t.TempDir(), "scratch"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for _, spill := range []*Scratch{nil, sc} {
		for _, to := range []uint64{40, 39, 25, 12, 1, 0} {
			os, err := l.Overlays(Whole(to), Whole(math.MaxUint64), 1<<30, spill, nil)
			if err != nil {
				t.Fatal(err)
			}
			for n, v := range vols {
				p := bytes.Clone(v.b)
				if o := os[n]; o != nil {
					if err := o.ReadOver(p, 0); err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(p, states[to][n]) {
					t.Fatalf("the overlay (spilled: %v) of group %d over volume %s differs from the volume at that group", spill != nil, to, n)
				}
			}
		}
	}
	if _, err := l.Overlays(Whole(0), Whole(math.MaxUint64), 4096, nil, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Overlays past their bound: %v", err)
	}
	small, err := CreateScratch(filepath.Join(t.TempDir(), "small"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if _, err := l.Overlays(Whole(0), Whole(math.MaxUint64), 1<<30, small, nil); !errors.Is(err, ErrScratchFull) {
		t.Fatalf("spilled Overlays past their Scratch's limit: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened, the index is rebuilt from the records.
	for _, to := range []uint64{39, 25, 25, 12, 1} {
		l, err := Open(dir, Options{Window: time.Hour, MaxBytes: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		sinks := map[string]Sink{"a": vols["a"], "b": vols["b"]}
		if err := l.Undo(Whole(to), sinks); err != nil {
			t.Fatal(err)
		}
		// Twice: as a rerun after a crash would.
		if err := l.Undo(Whole(to), sinks); err != nil {
			t.Fatal(err)
		}
		for n, v := range vols {
			if !bytes.Equal(v.b, states[to][n]) {
				t.Fatalf("undo to %d: volume %s differs", to, n)
			}
		}
		if err := l.Void(Whole(to)); err != nil {
			t.Fatal(err)
		}
		if l.Last() != to || l.Has(to+1) {
			t.Fatalf("after Void(%d): Last %d", to, l.Last())
		}
		l.Close()
	}
}

// TestUndoInterrupted: an Undo that stopped part-way (some of its writes
// done) and is run again leaves the same bytes.
func TestUndoInterrupted(t *testing.T) {
	l, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	v := &mem{bytes.Repeat([]byte{1}, 8192)}
	srcs := map[string]Source{"v": v}
	for g := uint64(1); g <= 3; g++ {
		if err := l.Capture(Header{Group: g, Time: int64(g)}, []Range{{"v", 0, 8192}}, srcs); err != nil {
			t.Fatal(err)
		}
		copy(v.b, bytes.Repeat([]byte{byte(g + 1)}, 8192))
	}
	v.b[100] = 9 // what a torn undo might leave
	copy(v.b[4096:], bytes.Repeat([]byte{3}, 100))
	if err := l.Undo(Whole(0), map[string]Sink{"v": v}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.b, bytes.Repeat([]byte{1}, 8192)) {
		t.Fatalf("undo to 0 did not restore the first content")
	}
}

// TestTornTail: a crash while a capture is written leaves a torn record,
// which Open drops: the group is not held and is captured again.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	v := &mem{bytes.Repeat([]byte{7}, 4096)}
	for g := uint64(1); g <= 2; g++ {
		if err := l.Capture(Header{Group: g, Time: int64(g)}, []Range{{"v", 0, 4096}}, map[string]Source{"v": v}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	seg := filepath.Join(dir, "0000000000000001.seg")
	st, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int64{1, 17, 100} {
		if err := os.Truncate(seg, st.Size()-cut); err != nil {
			t.Fatal(err)
		}
		l, err = Open(dir, Options{})
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if !l.Has(1) || l.Has(2) || l.Last() != 1 {
			t.Fatalf("cut %d: Has(1) %v Has(2) %v Last %d", cut, l.Has(1), l.Has(2), l.Last())
		}
		// Captured again, it is held.
		if err := l.Capture(Header{Group: 2, Time: 2}, []Range{{"v", 0, 4096}}, map[string]Source{"v": v}); err != nil {
			t.Fatal(err)
		}
		if !l.Has(2) {
			t.Fatal("group 2 captured again is not held")
		}
		l.Close()
		st, _ = os.Stat(seg)
	}
}

// TestIncompleteGroup: a group whose last part never reached the disk is
// not held, and its capture again replaces the parts that did.
func TestIncompleteGroup(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.append(&Record{Kind: KindUndo, Group: 1, Time: 1, Last: true}); err != nil {
		t.Fatal(err)
	}
	if err := l.append(&Record{Kind: KindUndo, Group: 2, Time: 2, Extents: []Extent{{Volume: "v", Length: 1, Data: []byte{5}}}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Has(2) || l.Last() != 1 {
		t.Fatalf("incomplete group 2 held: Last %d", l.Last())
	}
	v := &mem{[]byte{8}}
	if err := l.Capture(Header{Group: 2, Time: 2}, []Range{{"v", 0, 1}}, map[string]Source{"v": v}); err != nil {
		t.Fatal(err)
	}
	v.b[0] = 9
	if err := l.Undo(Whole(1), map[string]Sink{"v": v}); err != nil {
		t.Fatal(err)
	}
	if v.b[0] != 8 {
		t.Fatalf("undo took %d, the stale part's image, want 8", v.b[0])
	}
}

// TestTrim: the undo of groups older than the window, then the oldest while
// the files exceed MaxBytes, is dropped, never after keep.
func TestTrim(t *testing.T) {
	now := time.Unix(1000, 0)
	v := &mem{make([]byte, 1<<20)}
	rand.New(rand.NewSource(2)).Read(v.b)
	fill := func(l *Log) {
		for g := uint64(1); g <= 30; g++ {
			// 1 MiB of before image each, one a second, times 971 to 1000 s.
			if err := l.Capture(Header{Group: g, Time: time.Unix(970+int64(g), 0).UnixNano()}, []Range{{"v", 0, 1 << 20}}, map[string]Source{"v": v}); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("window", func(t *testing.T) {
		l, err := Open(t.TempDir(), Options{Window: 10 * time.Second, MaxBytes: 32 << 20, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		fill(l)
		if err := l.Trim(5); err != nil {
			t.Fatal(err)
		}
		if p, _ := l.Oldest(); p.Group > 6 {
			t.Fatalf("trimmed past keep: oldest group %d", p.Group)
		}
		if err := l.Trim(30); err != nil {
			t.Fatal(err)
		}
		p, ok := l.Oldest()
		if !ok || p.Time > time.Unix(990, 0).UnixNano() || p.Group < 10 {
			t.Fatalf("oldest group %d at %v after trim: want the window of 10 s from 1000 s reachable and little more", p.Group, time.Unix(0, p.Time))
		}
	})
	t.Run("bytes", func(t *testing.T) {
		l, err := Open(t.TempDir(), Options{Window: time.Hour, MaxBytes: 8 << 20, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		fill(l)
		if err := l.Trim(30); err != nil {
			t.Fatal(err)
		}
		// Two segments of 1 MiB past the cap, and one record past each.
		if l.Bytes() > 8<<20+4*(1<<20)+4096 {
			t.Fatalf("history holds %d bytes, cap 8 MiB", l.Bytes())
		}
		p, _ := l.Oldest()
		if l.Last() != 30 || p.Group < 18 {
			t.Fatalf("last %d, oldest %d", l.Last(), p.Group)
		}
	})
}

// A group whose before images exceed the bound is refused, and a gap in its
// place drops every earlier point, on disk too: reopened, the Log offers
// the gap's group as its oldest point, holds its undo (no capture again),
// and refuses to undo past it.
func TestGapDropsEarlierPoints(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{Window: time.Hour, MaxBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	vol := &mem{bytes.Repeat([]byte{7}, 8<<20)}
	srcs := map[string]Source{"v": vol}
	for g := uint64(1); g <= 3; g++ {
		if err := l.Capture(Header{Group: g, Time: int64(g)}, []Range{{"v", g * 4096, 4096}}, srcs); err != nil {
			t.Fatal(err)
		}
	}
	err = l.Capture(Header{Group: 4, Time: 4}, []Range{{"v", 0, 8 << 20}}, srcs)
	if !errors.Is(err, ErrGroupTooLarge) {
		t.Fatalf("capture of 8 MiB under a 4 MiB bound: %v, want ErrGroupTooLarge", err)
	}
	if err := l.Gap(Header{Group: 4, Time: 4, State: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	if err := l.Capture(Header{Group: 5, Time: 5}, []Range{{"v", 0, 4096}}, srcs); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if l, err = Open(dir, Options{Window: time.Hour, MaxBytes: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ps := l.Points()
	if len(ps) != 2 || ps[0].Group != 4 || string(ps[0].State) != "s" || ps[1].Group != 5 {
		t.Fatalf("points after the gap: %+v, want groups 4 (state s) and 5", ps)
	}
	if !l.Has(4) {
		t.Errorf("the gap's group is captured again after a restart")
	}
	if got := l.Bytes(); got > 1<<20 {
		t.Errorf("the history holds %d bytes after the gap", got)
	}
	if err := l.Undo(Whole(3), map[string]Sink{"v": vol}); !errors.Is(err, ErrOutside) {
		t.Errorf("undo past the gap: %v, want ErrOutside", err)
	}
	if err := l.Undo(Whole(4), map[string]Sink{"v": vol}); err != nil {
		t.Errorf("undo to the gap's group: %v", err)
	}
}
