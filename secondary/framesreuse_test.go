package secondary

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"duplex/apply"
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
	r := openFramesRig(t, volSize, func(_ string, tg apply.Target) apply.Target {
		return slowThroughTarget{slowTarget{Target: tg, pause: 5 * time.Millisecond}, &aligned}
	})
	want := map[string][]byte{"vol1": make([]byte, volSize), "vol2": make([]byte, volSize)}
	set := func(sub, vol string, seq uint64, ts int64) []byte {
		return oneUpdateSet(t, want, chunk, sub, vol, seq, ts)
	}
	for n := 1; n <= frames; n++ {
		ts := int64(n) * 1000
		sets := [][]byte{set("ss1", "vol1", uint64(n), ts)}
		if n > 1 {
			sets = [][]byte{set("ss2", "vol2", uint64(n-1), ts-999), sets[0]}
		}
		if err := r.conn.Send(transport.EncodeBundle(transport.Bundle{Sets: sets})); err != nil {
			t.Fatal(err)
		}
	}
	// Every group but the one of ss1's last set, which waits in the Former
	// for ss2's set of its interval, is applied while the stream lasts.
	deadline := time.Now().Add(time.Minute)
	r.waitApplied(uint64(2*(frames-1)*chunk), deadline)
	// The applier lets a group's frames go just after it counts the
	// group's bytes applied: wait for that, but not for the last set,
	// which a ledger that recycles only when the Former is empty would
	// need first.
	recycled := func() uint64 {
		r.sec.frames.mu.Lock()
		defer r.sec.frames.mu.Unlock()
		return r.sec.frames.recycled
	}
	settled := time.Now().Add(5 * time.Second)
	for recycled() < uint64(frames-1) && time.Now().Before(settled) {
		time.Sleep(time.Millisecond)
	}
	recycledBeforeLast := recycled()
	if err := r.conn.Send(transport.EncodeBundle(transport.Bundle{Sets: [][]byte{set("ss2", "vol2", uint64(frames), int64(frames)*1000+1)}})); err != nil {
		t.Fatal(err)
	}
	r.waitApplied(uint64(2*frames*chunk), deadline)
	r.checkVolumes(want, "what was sent", chunk, "a frame was recycled while a volume's write read it")
	if aligned.Load() == 0 {
		t.Fatal("no update lay on a page boundary: the frames were not placed for the volumes' direct writes")
	}
	r.stop()
	if updates := r.checkJournal(want, "a frame was recycled while the journal read it"); updates != 2*frames {
		t.Fatalf("the journal holds %d updates, %d were sent: a record written from a recycled frame fails its CRC", updates, 2*frames)
	}
	// Every frame but the last, whose ss1 set the Former holds, is free
	// once what it brought is applied.
	if recycledBeforeLast < uint64(frames-1) {
		t.Fatalf("%d of %d frames were recycled once every group but the last was applied: under a steady stream, with the Former "+
			"never empty, a frame must be recycled once its record sets are journaled and applied", recycledBeforeLast, frames)
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
