package pair

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"duplex/bitmap"
)

func TestReadDivergence(t *testing.T) {
	const size = 4 << 20
	region := int64(bitmap.DefaultRegion)
	writeState := func(t *testing.T, dir string, st persisted) {
		t.Helper()
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "pairs.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeBitmap := func(t *testing.T, dir, vol string, off, n int64) {
		t.Helper()
		bm := bitmap.New(size, region)
		bm.Set(off, n)
		b, _ := bm.MarshalBinary()
		if err := os.WriteFile(filepath.Join(dir, vol+".bitmap"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	regions := func(d Divergence) []int64 {
		var rs []int64
		for r, _, _, ok := d.Regions.Next(0); ok; r, _, _, ok = d.Regions.Next(r + 1) {
			rs = append(rs, r)
		}
		return rs
	}
	span := func(first, last int64) []int64 {
		var rs []int64
		for r := first; r <= last; r++ {
			rs = append(rs, r)
		}
		return rs
	}
	all := span(0, size/region-1)
	logged := map[string][][2]int64{"v": {{1 << 20, 1 << 20}}} // the log's 1 MiB regions
	cases := []struct {
		name   string
		pair   *Pair
		clean  bool
		noLog  bool
		bitmap bool // a bitmap marking region 40
		logErr error
		want   []int64
		whole  bool
	}{
		{name: "duplex, clean stop", pair: &Pair{State: Duplex}, clean: true, want: nil},
		{name: "duplex, kill -9", pair: &Pair{State: Duplex}, want: span(16, 31)},
		{name: "suspended, clean stop", pair: &Pair{State: Suspended}, clean: true, bitmap: true, want: []int64{40}},
		{name: "suspended, kill -9", pair: &Pair{State: Suspended}, bitmap: true, want: append(span(16, 31), 40)},
		{name: "copying, kill -9", pair: &Pair{State: Pending}, bitmap: true, want: append(span(16, 31), 40)},
		{name: "suspended without its bitmap", pair: &Pair{State: Suspended}, clean: true, want: all, whole: true},
		{name: "no pair", want: all, whole: true},
		{name: "deleted", pair: &Pair{State: Suspended, Deleted: true}, clean: true, want: all, whole: true},
		{name: "first copy", pair: &Pair{State: Pending, FirstCopy: true}, clean: true, bitmap: true, want: all, whole: true},
		{name: "inconsistent", pair: &Pair{State: Pending, Inconsistent: true}, clean: true, bitmap: true, want: all, whole: true},
		{name: "kill -9 of a run without a log", pair: &Pair{State: Duplex}, noLog: true, want: all, whole: true},
		{name: "kill -9, log unreadable", pair: &Pair{State: Duplex}, logErr: errors.New("EIO"), want: all, whole: true},
		{name: "clean stop, log unreadable", pair: &Pair{State: Duplex}, clean: true, logErr: errors.New("EIO"), want: nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			st := persisted{Clean: c.clean, NoLog: c.noLog}
			if c.pair != nil {
				c.pair.Volume, c.pair.Size = "v", size
				st.Pairs = []*Pair{c.pair}
			}
			writeState(t, dir, st)
			if c.bitmap {
				writeBitmap(t, dir, "v", 40*region+100, 10)
			}
			got, err := ReadDivergence(nil, dir, map[string]int64{"v": size}, logged, c.logErr)
			if err != nil {
				t.Fatal(err)
			}
			if rs := regions(got["v"]); !slices.Equal(rs, c.want) {
				t.Errorf("regions %v, want %v", rs, c.want)
			}
			if (got["v"].Whole != "") != c.whole {
				t.Errorf("whole %q, want whole %v", got["v"].Whole, c.whole)
			}
		})
	}
	t.Run("no pair state", func(t *testing.T) {
		got, err := ReadDivergence(nil, t.TempDir(), map[string]int64{"v": size}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got["v"].Whole == "" || got["v"].Regions.DirtyBytes() != size {
			t.Errorf("without a pair state: %q, %d bytes; want the whole volume", got["v"].Whole, got["v"].Regions.DirtyBytes())
		}
	})
}
