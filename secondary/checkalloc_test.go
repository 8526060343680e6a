package secondary

import (
	"testing"

	"duplex/recordset"
)

// Checking an arriving record set of writes costs no allocation per
// update: it runs for every update the secondary receives, and a check
// that builds an error for every write that is not a marker (as decoding
// each update as a marker did) cost several per write.
func TestCheckRecordSetOfWritesDoesNotAllocate(t *testing.T) {
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"a": 1 << 20}}
	r.openVolumes()
	sec, err := Open(r.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sec.Close() })
	rs := &recordset.RecordSet{Session: "s", Subsystem: "ss", Seq: 1, Group: 1}
	data := make([]byte, 4096)
	for i := range 64 {
		rs.Updates = append(rs.Updates, recordset.Update{Volume: "a", Kind: recordset.KindWrite,
			Offset: uint64(i) * 8192, Length: 4096, Timestamp: int64(i + 1), Seq: uint64(i + 1), Data: data})
	}
	if err := sec.checkRecordSet(rs); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(20, func() { sec.checkRecordSet(rs) }); n != 0 {
		t.Fatalf("checking a record set of %d writes allocates %.0f times, want none", len(rs.Updates), n)
	}
}
