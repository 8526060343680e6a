package secondary

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"duplex/apply"
	"duplex/consistency"
	"duplex/journal"
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
	rig := openFramesRig(t, volSize, func(tg apply.Target) apply.Target { return slowTarget{Target: tg, pause: 2 * time.Millisecond} })
	dir, vols, sec, conn, stop := rig.dir, rig.vols, rig.sec, rig.conn, rig.stop
	want := map[string][]byte{"vol1": make([]byte, volSize), "vol2": make([]byte, volSize)}
	update := func(vol string, slot int, ts int64) recordset.Update {
		off := slot * chunk
		data := want[vol][off : off+chunk]
		for i := range data {
			data[i] = byte(slot*31 + i*7 + len(vol))
		}
		return recordset.Update{Volume: vol, Kind: recordset.KindWrite, Offset: uint64(off), Length: chunk, Timestamp: ts, Seq: uint64(ts), Data: bytes.Clone(data)}
	}
	encode := func(rs *recordset.RecordSet) []byte {
		b, err := recordset.Encode(nil, rs)
		if err != nil {
			t.Fatal(err)
		}
		return b
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
		if err := conn.Send(transport.EncodeBundle(transport.Bundle{Sets: [][]byte{encode(ss1), encode(ss2)}})); err != nil {
			t.Fatal(err)
		}
	}
	// The last set's horizon passes what ss1's last set left waiting.
	last := &recordset.RecordSet{Session: "s", Subsystem: "ss2", Seq: uint64(frames + 1), Group: uint64(frames + 1), Horizon: int64(frames+1) * 1000}
	if err := conn.Send(transport.EncodeBundle(transport.Bundle{Sets: [][]byte{encode(last)}})); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for sec.Stats().BytesApplied < uint64(sent*chunk) {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d of %d bytes within a minute", sec.Stats().BytesApplied, sent*chunk)
		}
		time.Sleep(time.Millisecond)
	}
	for name, v := range vols {
		got := make([]byte, volSize)
		if err := v.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, want[name]); i >= 0 {
			t.Fatalf("%s differs from what was sent at byte %d (update %d): got %#x, want %#x; a frame was recycled while part of its set waited in the Former",
				name, i, i/chunk, got[i], want[name][i])
		}
	}
	stop()
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{MaxRecord: MaxGroupBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	updates := 0
	if err := j.Replay(0, func(index uint64, data []byte) error {
		g, _, err := consistency.DecodeGroup(data, groupLimits)
		if err != nil {
			return fmt.Errorf("group %d: %w", index, err)
		}
		for _, u := range g.Updates {
			if i := firstDiff(u.Data, want[u.Volume][u.Offset:u.Offset+uint64(len(u.Data))]); i >= 0 {
				return fmt.Errorf("group %d: the update of %s at %d differs from what was sent at its byte %d; a frame was recycled while part of its set waited in the Former",
					index, u.Volume, u.Offset, i)
			}
			updates++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if updates != sent {
		t.Fatalf("the journal holds %d updates, %d were sent: a record written from a recycled frame fails its CRC", updates, sent)
	}
}
