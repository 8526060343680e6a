package secondary

import (
	"bytes"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// sendSet sends record set seq (horizon seq ms) holding ups, stamped at
// seq ms - len(ups) .. seq ms - 1 in their order.
func (r *gateRig) sendSet(t *testing.T, seq uint64, ups []recordset.Update) {
	t.Helper()
	ts := int64(seq) * int64(time.Millisecond)
	rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: seq, Group: seq, ReadTime: ts, Horizon: ts}
	for i, u := range ups {
		u.Timestamp = ts - int64(len(ups)) + int64(i)
		u.Seq = 10*seq + uint64(i)
		rs.Updates = append(rs.Updates, u)
	}
	r.sendRecordSet(t, rs)
}

// sendRecordSet sends rs as it is.
func (r *gateRig) sendRecordSet(t *testing.T, rs *recordset.RecordSet) {
	t.Helper()
	f, err := recordset.Encode([]byte{transport.TypeRecordSet}, rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.conn.Send(transport.Seal(f)); err != nil {
		t.Fatal(err)
	}
}

func blockWrite(blk uint64, b byte) recordset.Update {
	return recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: blk * 4096, Length: 4096, Data: bytes.Repeat([]byte{b}, 4096)}
}
