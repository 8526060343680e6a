package apply

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"duplex/recordset"
	"duplex/volume"
)

// TestLongRunsOnVolumesMatchOrder: on real volumes, whose long aligned
// runs are written past the page cache (WriteThrough) and everything else
// through it, groups mixing sequential 1 MiB runs with small writes,
// zeroings and trims inside and across them leave the bytes applying every
// update in order to memory leaves, whatever reaches the disk which way;
// after a Flush the volumes read back the same, directly.
func TestLongRunsOnVolumesMatchOrder(t *testing.T) {
	const size = 16 << 20
	dir := t.TempDir()
	v, err := volume.Open(filepath.Join(dir, "x.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	mem := newMem(size)
	rng := rand.New(rand.NewPCG(8, 9))
	for gi := range 6 {
		var us []recordset.Update
		ts := int64(0)
		add := func(u recordset.Update) {
			ts++
			u.Timestamp = ts
			us = append(us, u)
		}
		for range 12 {
			switch rng.IntN(4) {
			case 0, 1: // a sequential writer's run of 1 MiB writes
				n := 1 + rng.IntN(5)
				off := uint64(rng.IntN(size/(1<<20)-n)) << 20
				for k := range n {
					data := make([]byte, 1<<20)
					for j := range data {
						data[j] = byte(gi*31 + k*7 + j>>12 + 1)
					}
					add(recordset.Update{Volume: "x", Kind: recordset.KindWrite, Offset: off + uint64(k)<<20, Length: 1 << 20, Data: data})
				}
			case 2: // a small write anywhere, often inside a run
				n := 1 + rng.IntN(9000)
				off := uint64(rng.IntN(size - n))
				data := bytes.Repeat([]byte{byte(0x80 + rng.IntN(120))}, n)
				add(recordset.Update{Volume: "x", Kind: recordset.KindWrite, Offset: off, Length: uint64(n), Data: data})
			default:
				n := uint64(1 + rng.IntN(3<<20))
				off := uint64(rng.IntN(size - int(n)))
				add(zeroes([]recordset.Kind{recordset.KindZeroes, recordset.KindTrim}[rng.IntN(2)], "x", off, n, 0))
			}
		}
		g := group(us...)
		for i := range g.Updates {
			g.Updates[i].Timestamp = int64(i + 1)
		}
		if err := Group(g, map[string]Target{"x": v}); err != nil {
			t.Fatal(err)
		}
		if err := Group(g, map[string]Target{"x": mem}); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, size)
		for _, read := range []struct {
			name string
			fn   func([]byte, int64) error
		}{{"ReadAt", v.ReadAt}, {"ReadThrough", v.ReadThrough}} {
			if err := read.fn(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, mem.img) {
				t.Fatalf("group %d: %s: the volume differs from the updates applied in order at byte %d", gi, read.name, diffAt(got, mem.img))
			}
		}
	}
}
