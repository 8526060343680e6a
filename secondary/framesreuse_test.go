package secondary

import (
	"bytes"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"duplex/apply"
	"duplex/consistency"
	"duplex/journal"
	"duplex/recordset"
	"duplex/transport"
)

// TestFramesAreRecycledUnderASteadyStream streams bundles of two 1 MiB
// record sets, the one ss2 owes for the interval before and ss1's of the
// next, so that the Former holds ss1's set after every frame, as it does
// whenever two subsystems write at once. Each frame must be recycled once
// its last record set is journaled and applied, not only when the Former
// holds nothing (which under such a stream is never): a frame made anew
// for every frame of a steady stream is zeroed and faulted in, a cost per
// byte replicated.
//
// Recycled frames are poisoned (the package's tests), and the volumes'
// writes are slowed, so that the applier still reads a group's frames
// while later frames are journaled: a frame recycled while the journal or
// a volume still reads it puts the poison on the disk. The volumes and
// every update in the journal must be byte for byte what was sent.
func TestFramesAreRecycledUnderASteadyStream(t *testing.T) {
	const chunk = 1 << 20
	frames := 24
	if raceDetector {
		frames = 12
	}
	volSize := int64(frames * chunk)
	var aligned atomic.Int64
	rig := openFramesRig(t, volSize, func(tg apply.Target) apply.Target {
		return slowThroughTarget{slowTarget{Target: tg, pause: 5 * time.Millisecond}, &aligned}
	})
	dir, vols, sec, conn, stop := rig.dir, rig.vols, rig.sec, rig.conn, rig.stop
	want := map[string][]byte{"vol1": make([]byte, volSize), "vol2": make([]byte, volSize)}
	set := func(sub, vol string, seq uint64, ts int64) []byte {
		off := (int(seq) - 1) * chunk
		data := want[vol][off : off+chunk]
		for i := range data {
			data[i] = byte(int(seq)*31 + i*7 + len(vol)*int(sub[2]))
		}
		rs := &recordset.RecordSet{Session: "s", Subsystem: sub, Seq: seq, Group: seq, ReadTime: ts, Horizon: ts + 500,
			Updates: []recordset.Update{{Volume: vol, Kind: recordset.KindWrite, Offset: uint64(off), Length: chunk,
				Timestamp: ts, Seq: seq, Data: bytes.Clone(data)}}}
		b, err := recordset.Encode(nil, rs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for n := 1; n <= frames; n++ {
		ts := int64(n) * 1000
		sets := [][]byte{set("ss1", "vol1", uint64(n), ts)}
		if n > 1 {
			sets = [][]byte{set("ss2", "vol2", uint64(n-1), ts-999), sets[0]}
		}
		if err := conn.Send(transport.EncodeBundle(transport.Bundle{Sets: sets})); err != nil {
			t.Fatal(err)
		}
	}
	// Every group but the one of ss1's last set, which waits in the Former
	// for ss2's set of its interval, is applied while the stream lasts.
	deadline := time.Now().Add(time.Minute)
	for sec.Stats().BytesApplied < uint64(2*(frames-1)*chunk) {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d of %d bytes within a minute", sec.Stats().BytesApplied, 2*(frames-1)*chunk)
		}
		time.Sleep(time.Millisecond)
	}
	sec.frames.mu.Lock()
	recycled := sec.frames.recycled
	sec.frames.mu.Unlock()
	if err := conn.Send(transport.EncodeBundle(transport.Bundle{Sets: [][]byte{set("ss2", "vol2", uint64(frames), int64(frames)*1000+1)}})); err != nil {
		t.Fatal(err)
	}
	sent := uint64(2 * frames * chunk)
	for sec.Stats().BytesApplied < sent {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d of %d bytes within a minute", sec.Stats().BytesApplied, sent)
		}
		time.Sleep(time.Millisecond)
	}
	for name, v := range vols {
		got := make([]byte, volSize)
		if err := v.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, want[name]); i >= 0 {
			t.Fatalf("%s differs from what was sent at byte %d (update %d): got %#x, want %#x; a frame was recycled while a volume's write read it",
				name, i, i/chunk, got[i], want[name][i])
		}
	}
	if aligned.Load() == 0 {
		t.Fatal("no update lay on a page boundary: the frames were not placed for the volumes' direct writes")
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
			sent := want[u.Volume][u.Offset : u.Offset+uint64(len(u.Data))]
			if i := firstDiff(u.Data, sent); i >= 0 {
				return fmt.Errorf("group %d: the update of %s at %d differs from what was sent at its byte %d: got %#x, want %#x; a frame was recycled while the journal read it",
					index, u.Volume, u.Offset, i, u.Data[i], sent[i])
			}
			updates++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if updates != 2*frames {
		t.Fatalf("the journal holds %d updates, %d were sent: a record written from a recycled frame fails its CRC", updates, 2*frames)
	}
	// Every frame but the last, whose ss1 set the Former holds, is free
	// once what it brought is applied.
	if recycled < uint64(frames-1) {
		t.Fatalf("%d of %d frames were recycled once every group but the last was applied: under a steady stream, with the Former "+
			"never empty, a frame must be recycled once its record sets are journaled and applied", recycled, frames)
	}
}

// TestFrameBoundsCountTheAlignment: a frame buffer of huge pages is made
// with a huge page more than it holds, to align it (disk.DirectBuffer),
// and the bounds on what the secondary keeps idle (maxKeptHuge) and holds
// for recycling (maxOpenBytes) are of memory: they must count that page.
// The heap the kept or held buffers take must stay within each bound.
func TestFrameBoundsCountTheAlignment(t *testing.T) {
	poisonFrames = false
	t.Cleanup(func() { poisonFrames = true })
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const n = 2<<20 + 8<<10 // a frame of two 1 MiB record sets
	_, class := frameClass(n)
	t.Run("kept", func(t *testing.T) {
		hugeFrames.mu.Lock()
		hugeFrames.used = false
		hugeFrames.mu.Unlock()
		dropIdleHuge()
		base := live()
		var bufs [][]byte
		for range maxKeptHuge/class + 1 {
			bufs = append(bufs, getFrame(n))
		}
		for _, b := range bufs {
			putFrame(b)
		}
		bufs = nil
		kept := live() - min(base, live())
		hugeFrames.mu.Lock()
		hugeFrames.used = false
		hugeFrames.mu.Unlock()
		dropIdleHuge()
		if kept > maxKeptHuge {
			t.Fatalf("%d idle buffers for frames of %d bytes (%d KiB of capacity each) keep %d MiB of the heap, over the bound of %d MiB",
				maxKeptHuge/class+1, n, class>>10, kept>>20, maxKeptHuge>>20)
		}
	})
	t.Run("ledger", func(t *testing.T) {
		var l frameLedger
		base := live()
		var peak uint64
		for range 2 * maxOpenBytes / class {
			l.add(getFrame(n))
			peak = max(peak, live()-min(base, live()))
		}
		runtime.KeepAlive(&l)
		if peak > maxOpenBytes {
			t.Fatalf("the ledger, given frames of %d KiB of capacity each with the Former never empty, held up to %d MiB of the heap, over the bound of %d MiB",
				class>>10, peak>>20, maxOpenBytes>>20)
		}
	})
}
