package recordset

import (
	"testing"
)

// The parts of a set of many small summed updates (a consistency group of
// 4 KiB writes, journaled from its frames) are gathered into one slice
// sized once: 900 updates took 12 growths of the slice, each a copy of
// what it held, new memory at every group.
func TestEncodePartsSizesItsPartsOnce(t *testing.T) {
	data := make([]byte, 4096)
	rs := &RecordSet{Session: "s", Subsystem: "a", Seq: 1, Group: 1, Horizon: 901}
	for i := range 900 {
		u := Update{Volume: "v", Kind: KindWrite, Offset: uint64(i) << 12, Length: 4096, Timestamp: int64(i + 1), Seq: uint64(i + 1), Data: data}
		u.Checksum()
		rs.Updates = append(rs.Updates, u)
	}
	dst := make([]byte, 0, 1<<20)
	var parts [][]byte
	allocs := testing.AllocsPerRun(20, func() {
		var err error
		if _, parts, _, err = EncodeParts(dst, rs, nil); err != nil {
			t.Fatal(err)
		}
	})
	if len(parts) != 900+2 {
		t.Fatalf("%d parts, want %d (the header, each update, the checksum)", len(parts), 900+2)
	}
	if allocs > 3 {
		t.Errorf("%.0f allocations a set encoded into parts, want at most 3", allocs)
	}
}
