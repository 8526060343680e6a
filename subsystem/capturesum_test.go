package subsystem

import (
	"context"
	"math"
	"testing"

	"duplex/recordset"
)

// TestALargeWritesCaptureChecksumIsOfItsBytes: a large write is
// checksummed at capture (before the sidefile's pacing); the record set
// the mover encodes from its updates, combining those sums, decodes
// (its payload checksum checked) to the bytes on the volume, whether the
// write was copied from the caller's buffer (which the caller then
// reuses), handed over (WriteOwned), or split into pieces.
func TestALargeWritesCaptureChecksumIsOfItsBytes(t *testing.T) {
	f := bigFixture(t, 256<<20, 32<<20)
	ctx := context.Background()
	// A stream's writes, not a burst's: the sidefile past the share from
	// which large writes are checksummed at capture.
	held := int64(captureSumFill*float64(f.side.Unpaced())) + 1
	if _, err := f.side.Reserve(ctx, held); err != nil {
		t.Fatal(err)
	}
	defer f.side.Release(held)
	mine := pattern(MaxUpdate*2 + 96<<10) // pieces, the last >= SplitMin
	if err := f.ss.Write(ctx, "v0", mine, 0); err != nil {
		t.Fatal(err)
	}
	clear(mine) // the caller's buffer, reused
	owned := f.ss.NewPayload(3 << 20)
	copy(owned, pattern(len(owned)))
	if err := f.ss.WriteOwned(ctx, "v0", owned, 16<<20); err != nil {
		t.Fatal(err)
	}
	small := f.ss.NewPayload(64 << 10) // SplitMin exactly
	copy(small, pattern(len(small))[1:])
	if err := f.ss.Write(ctx, "v0", small, 24<<20); err != nil {
		t.Fatal(err)
	}
	us, _, _ := f.ss.Drain()
	if len(us) < 5 {
		t.Fatalf("%d updates captured, want the pieces of three writes", len(us))
	}
	rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: 1, Group: 1, ReadTime: 1, Horizon: math.MaxInt64 / 2}
	for i, u := range us {
		u.Seq = uint64(i + 1)
		rs.Updates = append(rs.Updates, u)
	}
	b, err := recordset.Encode(nil, rs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := recordset.Decode(b, recordset.Limits{MaxHeader: math.MaxInt32, MaxPayload: math.MaxInt32, MaxRecords: 1 << 20})
	if err != nil {
		t.Fatalf("the record set of the captured updates, their sums taken at capture: %v", err)
	}
	for i, u := range us {
		if len(u.Data) >= recordset.SplitMin && !u.Summed() {
			t.Fatalf("update %d of %d bytes not checksummed at capture", i, len(u.Data))
		}
	}
	for i, u := range got.Updates {
		if want := readVol(t, f.vols["v0"], int64(u.Offset), int64(u.Length)); string(u.Data) != string(want) {
			t.Fatalf("update %d at %d carries bytes the volume does not hold", i, u.Offset)
		}
	}
	releaseAll(f.side, us)
}
