package secondary

import (
	"bytes"
	"testing"
	"time"

	"duplex/apply"
	"duplex/recordset"
	"duplex/transport"
)

// TestFramesOfACutSetAreKeptUntilItIsFormed streams frames that each bring
// ss1's set of four updates and ss2's set whose horizon falls inside
// ss1's: the Former takes ss1's set whole, the group through ss2's horizon
// takes its first two updates, and its last two wait in the Former, their
// data still in the frame, until the next frame's ss2 horizon passes them.
// A frame recycled once part of its set is formed (recycled frames are
// poisoned in the package's tests) puts the poison on the volumes and in
// the journal; both must hold byte for byte what was sent.
func TestFramesOfACutSetAreKeptUntilItIsFormed(t *testing.T) {
	const chunk = 128 << 10
	frames := 16
	if raceDetector {
		frames = 8
	}
	volSize := int64(frames * 4 * chunk)
	r := openFramesRig(t, volSize, func(_ string, tg apply.Target) apply.Target {
		return slowTarget{Target: tg, pause: 2 * time.Millisecond}
	})
	want := map[string][]byte{"vol1": make([]byte, volSize), "vol2": make([]byte, volSize)}
	update := func(vol string, slot int, ts int64) recordset.Update {
		off := slot * chunk
		data := want[vol][off : off+chunk]
		for i := range data {
			data[i] = byte(slot*31 + i*7 + len(vol))
		}
		return recordset.Update{Volume: vol, Kind: recordset.KindWrite, Offset: uint64(off), Length: chunk, Timestamp: ts, Seq: uint64(ts), Data: bytes.Clone(data)}
	}
	sent := 0
	for n := 1; n <= frames; n++ {
		base := int64(n) * 1000
		ss1 := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: uint64(n), Group: uint64(n), ReadTime: base, Horizon: base + 300}
		for k := range 4 {
			ss1.Updates = append(ss1.Updates, update("vol1", 4*(n-1)+k, base+int64(k)*100))
		}
		ss2 := &recordset.RecordSet{Session: "s", Subsystem: "ss2", Seq: uint64(n), Group: uint64(n), ReadTime: base, Horizon: base + 150,
			Updates: []recordset.Update{update("vol2", n-1, base+50)}}
		sent += 5
		if err := r.conn.Send(transport.EncodeBundle(transport.Bundle{Sets: [][]byte{encodeSet(t, ss1), encodeSet(t, ss2)}})); err != nil {
			t.Fatal(err)
		}
	}
	// The last set's horizon passes what ss1's last set left waiting.
	last := &recordset.RecordSet{Session: "s", Subsystem: "ss2", Seq: uint64(frames + 1), Group: uint64(frames + 1), Horizon: int64(frames+1) * 1000}
	if err := r.conn.Send(transport.EncodeBundle(transport.Bundle{Sets: [][]byte{encodeSet(t, last)}})); err != nil {
		t.Fatal(err)
	}
	const why = "a frame was recycled while part of its set waited in the Former"
	r.waitApplied(uint64(sent*chunk), time.Now().Add(time.Minute))
	r.checkVolumes(want, "what was sent", chunk, why)
	r.stop()
	if updates := r.checkJournal(want, why); updates != sent {
		t.Fatalf("the journal holds %d updates, %d were sent: a record written from a recycled frame fails its CRC", updates, sent)
	}
}
