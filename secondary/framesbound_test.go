package secondary

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// TestFramesInUseStayBounded streams 1 MiB updates of two subsystems for
// as long as a few hundred frames, each frame a bundle of the set ss2 owes
// the interval before and ss1's set of the next one, so the Former holds
// ss1's set after every frame, and the ledger holds every frame whose set
// it holds. The received frames must not pile up: the memory they take
// (the live heap after a collection) must stay under what the design
// allows, whatever the length of the stream:
//
//   - kept idle for reuse: maxKeptHuge, which counts the huge page each
//     huge buffer is made with for its alignment (disk.DirectBuffer);
//   - held by the ledger while the Former holds their record sets:
//     maxOpenBytes, counted the same way, past which it lets the oldest go
//     to the collector;
//   - in use by the pipeline: the read room (two frames), the group being
//     journaled, the applier's queue and its group in hand (three groups),
//     the Former's pending set: a few frames.
//
// The stream is paced as the primary is by the secondary's acknowledgements
// (no more than a few frames ahead of what was applied), so what the test
// itself holds is small.
//
// The halves of the stream are compared where the secondary has settled
// (every group the frames sent complete applied, their frames let go), less
// the buffers kept idle: those are as many as the pipeline ever held at
// once, which depends on how the secondary's goroutines were scheduled
// (under -race on a loaded machine, two more frames in flight at one
// moment of the second half kept 9 MiB more for the rest of the stream),
// and maxKeptHuge bounds them whatever the stream's length. What is left
// is what the secondary holds beyond them: a frame kept where the ledger
// should have let it go shows there, and on the ledger.
func TestFramesInUseStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams some hundreds of MiB")
	}
	const (
		chunk   = 1 << 20
		volSize = 16 << 20
		ahead   = 4 // frames sent ahead of what was applied
	)
	frames := uint64(300)
	if raceDetector {
		frames = 125 // five times round the ledger's bound all the same
	}
	r := openFramesRig(t, volSize, nil)
	sec, conn := r.sec, r.conn
	data := bytes.Repeat([]byte{0x5a}, chunk)
	set := func(sub, vol string, seq uint64, ts int64) []byte {
		off := uint64((int(seq) - 1) * chunk % volSize)
		return encodeSet(t, &recordset.RecordSet{Session: "s", Subsystem: sub, Seq: seq, Group: seq, ReadTime: ts, Horizon: ts + 500,
			Updates: []recordset.Update{{Volume: vol, Kind: recordset.KindWrite, Offset: off, Length: chunk,
				Timestamp: ts, Seq: seq, Data: data}}})
	}
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	keptBytes := func() uint64 {
		hugeFrames.mu.Lock()
		defer hugeFrames.mu.Unlock()
		return uint64(hugeFrames.bytes)
	}
	base := live()
	// Less the buffers the tests before left kept idle, which the stream
	// takes and puts back.
	baseHeld := base - min(base, keptBytes())
	// A frame of two 1 MiB sets is placed in a buffer of its class past
	// 2 MiB: huge, made with a huge page more.
	const frameBytes = 2*chunk + 8<<10
	_, class := frameClass(frameBytes + placeAlign)
	made := uint64(frameCost(class))
	bound := maxKeptHuge + maxOpenBytes + 8*made
	var peak, firstHalf uint64
	deadline := time.Now().Add(3 * time.Minute)
	// settle waits until the secondary has applied every group the n frames
	// sent complete (all but the last ss1 set, which the Former holds) and
	// has let go of their frames, and returns the ledger's frames then.
	settle := func(n uint64) int {
		for {
			if sec.Stats().BytesApplied >= 2*(n-1)*chunk {
				// The receiver releases a frame under s.mu once its
				// groups are handed over: taking it waits for that.
				sec.mu.Lock()
				open := len(sec.frames.open)
				sec.mu.Unlock()
				sec.frames.mu.Lock()
				waiting := len(sec.frames.waiting)
				sec.frames.mu.Unlock()
				if waiting == 0 && open <= 1 {
					return open
				}
			}
			if time.Now().After(deadline) {
				sec.mu.Lock()
				open := len(sec.frames.open)
				sec.mu.Unlock()
				sec.frames.mu.Lock()
				waiting := len(sec.frames.waiting)
				sec.frames.mu.Unlock()
				t.Fatalf("after %d frames, applied %d of %d bytes within 3 minutes, the ledger holding %d frames and %d releases waiting for the applier: "+
					"the frames of groups applied are not let go", n, sec.Stats().BytesApplied, 2*(n-1)*chunk, open, waiting)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for n := uint64(1); n <= frames; n++ {
		ts := int64(n) * 1000
		sets := [][]byte{set("ss1", "vol1", n, ts)}
		if n > 1 {
			sets = [][]byte{set("ss2", "vol2", n-1, ts-999), sets[0]}
		}
		if err := conn.Send(transport.EncodeBundle(transport.Bundle{Sets: sets})); err != nil {
			t.Fatal(err)
		}
		// The primary sends no further ahead than the secondary's room.
		for n > ahead && sec.Stats().BytesApplied < 2*(n-ahead)*chunk {
			if time.Now().After(deadline) {
				t.Fatalf("applied %d bytes after %d frames within 3 minutes", sec.Stats().BytesApplied, n)
			}
			time.Sleep(time.Millisecond)
		}
		if n%5 != 0 {
			continue
		}
		// In flight: what the pipeline holds, up to its bound.
		l := live() - min(base, live())
		if l > bound {
			t.Fatalf("after %d frames of %d KiB with the Former never empty, the heap holds %d MiB more than before the stream, "+
				"over the bound of %d MiB (kept %d MiB of huge buffers, ledger %d MiB, pipeline 8 frames): received frames pile up",
				n, frameBytes>>10, l>>20, bound>>20, maxKeptHuge>>20, maxOpenBytes>>20)
		}
		// Settled: what the secondary holds beside the buffers kept idle.
		open := settle(n)
		all := live()
		kept := keptBytes()
		held := all - min(all, kept+baseHeld)
		peak = max(peak, held)
		if n <= frames/2 {
			firstHalf = peak
		}
		if n%25 == 0 {
			t.Logf("after %d frames (%d MiB sent): %d MiB live in flight; settled, %d MiB held beside %d MiB kept, the ledger holding %d frames",
				n, n*frameBytes>>20, l>>20, held>>20, kept>>20, open)
		}
	}
	t.Logf("settled, held at most %d MiB (first half %d MiB), bound %d MiB", peak>>20, firstHalf>>20, bound>>20)
	// Whatever the bounds' constants, the second half of the stream must
	// hold no more than the first did.
	if peak > firstHalf+2*made {
		t.Fatalf("settled, the secondary held at most %d MiB beside the buffers kept over the first %d frames, %d MiB over the next ones: "+
			"received frames pile up with the stream's length", firstHalf>>20, frames/2, peak>>20)
	}
}
