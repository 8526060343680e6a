package apply

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"duplex/consistency"
	"duplex/recordset"
)

// foldByMap is fold as a map by volume name, offset and length: the
// definition the table in scratch.fold must agree with.
func foldByMap(us []recordset.Update) []bool {
	type key struct {
		vol         string
		off, length uint64
	}
	last := map[key]int{}
	for i, u := range us {
		if u.Kind != recordset.KindMarker {
			last[key{u.Volume, u.Offset, u.Length}] = i
		}
	}
	out := make([]bool, len(us))
	for i, u := range us {
		out[i] = u.Kind != recordset.KindMarker && last[key{u.Volume, u.Offset, u.Length}] != i
	}
	return out
}

// TestFoldAgreesWithTheMap folds random groups, dense in exact repeats,
// repeats on another volume, repeats of another length, markers over a
// written range and every kind, and checks every update's mark against
// foldByMap, the scratch reused from group to group as Updates does.
func TestFoldAgreesWithTheMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	// Up to 40 volumes: past maxSearched, resolve finds names by a map.
	vols := map[string]Target{}
	var names []string
	for i := range 40 {
		n := fmt.Sprintf("v%02d", i)
		vols[n], names = newMem(1), append(names, n)
	}
	volsIn := []int{1, 2, 3, 40}
	kinds := []recordset.Kind{recordset.KindWrite, recordset.KindWrite, recordset.KindZeroes, recordset.KindTrim, recordset.KindCopy, recordset.KindMarker}
	sc := new(scratch)
	for trial := range 2000 {
		n := rng.IntN(300)
		span := uint64(1 + rng.IntN(64)) // few distinct offsets: many repeats
		g := &consistency.Group{Number: uint64(trial + 1)}
		for i := range n {
			u := recordset.Update{
				Volume: names[rng.IntN(volsIn[trial%len(volsIn)])],
				Kind:   kinds[rng.IntN(len(kinds))],
				Offset: rng.Uint64N(span) * 4096,
				Length: 4096 << rng.IntN(2),
				Seq:    uint64(i + 1),
			}
			if trial%5 == 0 {
				u.Offset = rng.Uint64N(1<<40) &^ 511 // spread: collisions in the table only
			}
			g.Updates = append(g.Updates, u)
		}
		if _, err := sc.resolve(g, vols); err != nil {
			t.Fatal(err)
		}
		for i, u := range g.Updates {
			if v := sc.vol[i]; (v < 0) != (u.Kind == recordset.KindMarker) || v >= 0 && sc.names[v] != u.Volume {
				t.Fatalf("trial %d: update %d of %s resolved to %d", trial, i, u.Volume, v)
			}
		}
		got := append([]bool(nil), sc.fold(g.Updates)...)
		if want := foldByMap(g.Updates); !reflect.DeepEqual(got, want) {
			for i := range want {
				if got[i] != want[i] {
					u := g.Updates[i]
					t.Fatalf("trial %d: update %d (%s %s %d+%d) folded %v, want %v", trial, i, u.Volume, u.Kind, u.Offset, u.Length, got[i], want[i])
				}
			}
		}
	}
}

// TestUpdatesRefusesAnUnknownVolumeBeforeWriting: a group naming a volume
// the secondary does not have writes nothing, even to the volumes it has.
func TestUpdatesRefusesAnUnknownVolumeBeforeWriting(t *testing.T) {
	a := newMem(1 << 16)
	g := &consistency.Group{Number: 3, Updates: []recordset.Update{
		{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4, Data: []byte("abcd"), Seq: 1},
		{Volume: "x", Kind: recordset.KindWrite, Offset: 0, Length: 4, Data: []byte("efgh"), Seq: 2},
	}}
	_, err := Updates(g, map[string]Target{"a": a})
	if want := fmt.Sprintf("apply group 3: no secondary volume %q", "x"); err == nil || err.Error() != want {
		t.Fatalf("Updates: %v, want %s", err, want)
	}
	if a.ops != 0 {
		t.Fatalf("%d operations on a, want none", a.ops)
	}
}

// TestFoldKeepsTheSameRangeOfAnotherVolume: two writes of one range on two
// volumes whose keys start at the same slot of fold's table; neither covers
// the other.
func TestFoldKeepsTheSameRangeOfAnotherVolume(t *testing.T) {
	const bits = 4 // the table of a group of two
	off := uint64(0)
	for home(off, 4096, 0, bits) != home(off, 4096, 1, bits) {
		if off += 4096; off > 1<<32 {
			t.Fatal("no offset whose key starts at the same slot on both volumes")
		}
	}
	g := &consistency.Group{Number: 1, Updates: []recordset.Update{
		{Volume: "a", Kind: recordset.KindWrite, Offset: off, Length: 4096, Seq: 1},
		{Volume: "b", Kind: recordset.KindWrite, Offset: off, Length: 4096, Seq: 2},
	}}
	sc := new(scratch)
	if _, err := sc.resolve(g, map[string]Target{"a": newMem(1), "b": newMem(1)}); err != nil {
		t.Fatal(err)
	}
	if got := sc.fold(g.Updates); got[0] || got[1] {
		t.Fatalf("folded %v for writes of %d on two volumes, want neither", got, off)
	}
}
