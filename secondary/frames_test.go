package secondary

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"duplex/apply"
	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
)

// Every test of the package runs with recycled frames poisoned: a reader
// still holding one reads 0xA5 (and races with the fill under -race).
func init() { poisonFrames = true }

// noPoison turns the poison off for a benchmark: it is the tests' check,
// not the product's cost.
func noPoison(b *testing.B) {
	b.Cleanup(func() { poisonFrames = true })
	poisonFrames = false
}

// slowTarget reads what it is asked to write only after a pause, as a slow
// disk would, so that the applier holds a group's data while the receiver
// journals the next ones.
type slowTarget struct {
	apply.Target
	pause time.Duration
}

func (t slowTarget) WriteAt(p []byte, off int64) error {
	time.Sleep(t.pause)
	return t.Target.WriteAt(p, off)
}

// TestRecycledFramesAreNotReadAgain sends record sets whose data is read
// after the frames that brought them: updates of one subsystem wait in the
// Former for the next frame, which brings the other subsystem's horizon,
// and a slow volume keeps the applier reading a group while later frames
// arrive and are journaled. Each update's bytes are distinct; the volumes
// must end up holding exactly them. A frame recycled while its data is
// still to be applied writes the poison instead.
func TestRecycledFramesAreNotReadAgain(t *testing.T) {
	checkRecycledFrames(t, 8<<10, 24, false)
}

// TestRecycledFramesAreNotWrittenAgain is TestRecycledFramesAreNotReadAgain
// with updates large enough that the journal writes them from the frames
// they arrived in (records with gaps, where the journal writes directly):
// a frame recycled before its group's record is written puts the poison on
// the disk, under the CRC of what was sent, and the record fails when the
// journal is read back. Every update read back must be what was sent.
func TestRecycledFramesAreNotWrittenAgain(t *testing.T) {
	checkRecycledFrames(t, 96<<10, 16, true)
}

// TestRecycledFramesAreNotWrittenThroughAgain is
// TestRecycledFramesAreNotWrittenAgain with updates of 1 MiB, whose frames
// the receiver places so that the data lies on page boundaries and the
// volumes' direct writes take it from the frames (volume.WriteThrough): a
// frame recycled while a volume's write still reads it puts the poison on
// the volume.
func TestRecycledFramesAreNotWrittenThroughAgain(t *testing.T) {
	checkRecycledFrames(t, 1<<20, 8, true)
}

// slowThroughTarget is a slowTarget whose runs are written as the
// volume's are (WriteThrough), after the pause, counting the buffers
// that lie on page boundaries.
type slowThroughTarget struct {
	slowTarget
	aligned *atomic.Int64
}

func (t slowThroughTarget) WriteVAt(bufs [][]byte, off int64) error {
	time.Sleep(t.pause)
	return t.Target.(apply.VectorWriter).WriteVAt(bufs, off)
}

func (t slowThroughTarget) WriteThrough(bufs [][]byte, off int64) error {
	time.Sleep(t.pause)
	for _, b := range bufs {
		if uintptr(unsafe.Pointer(unsafe.SliceData(b)))%placeAlign == 0 {
			t.aligned.Add(1)
		}
	}
	return t.Target.(apply.ThroughWriter).WriteThrough(bufs, off)
}

// checkRecycledFrames sends sets pairs of record sets of one update of
// chunk bytes each, and checks that the volumes hold what was sent; with
// replay, that the journal holds it too, read back after the secondary is
// closed.
func checkRecycledFrames(t *testing.T, chunk, sets int, replay bool) {
	volSize := int64(max(1<<20, sets*chunk))
	var aligned atomic.Int64
	r := openFramesRig(t, volSize, func(_ string, tg apply.Target) apply.Target {
		if chunk >= volume.ThroughMin {
			return slowThroughTarget{slowTarget{Target: tg, pause: 5 * time.Millisecond}, &aligned}
		}
		return slowTarget{Target: tg, pause: 5 * time.Millisecond}
	})
	want := map[string][]byte{"vol1": make([]byte, volSize), "vol2": make([]byte, volSize)}
	frame := func(sub, vol string, seq uint64, ts int64) []byte {
		return transport.Seal(append([]byte{transport.TypeRecordSet}, oneUpdateSet(t, want, chunk, sub, vol, seq, ts)...))
	}
	for n := uint64(1); n <= uint64(sets); n++ {
		ts := int64(n) * 1000
		// ss1's update waits in the Former until ss2's set of the same
		// interval arrives in the next frame.
		for _, f := range [][]byte{frame("ss1", "vol1", n, ts), frame("ss2", "vol2", n, ts+1)} {
			if err := r.conn.Send(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.waitApplied(uint64(2*sets*chunk), time.Now().Add(time.Minute))
	r.checkVolumes(want, "what was sent", chunk, "a recycled frame was read again")
	if chunk >= volume.ThroughMin && aligned.Load() == 0 {
		t.Fatal("no update lay on a page boundary: the frames were not placed for the volumes' direct writes")
	}
	if !replay {
		return
	}
	r.stop()
	jdir := filepath.Join(r.dir, "journal")
	if gapped := gappedRecords(t, jdir); gapped == 0 && journalWritesDirectly(t, jdir) {
		t.Fatal("no record with gaps: the journal wrote no update from its frame")
	}
	if updates := r.checkJournal(want, "a recycled frame was written"); updates != 2*sets {
		t.Fatalf("the journal holds %d updates, %d were sent: a record written from a recycled frame fails its CRC", updates, 2*sets)
	}
}

// gappedRecords counts the records with gaps (journal format version 3,
// see journal/doc.go) in the segments of the journal in dir.
func gappedRecords(t *testing.T, dir string) int {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	n := 0
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 24 || be.Uint32(b[4:]) != 3 {
			continue
		}
		for off := 24; off+32 <= len(b); {
			l := int(be.Uint32(b[off:]))
			if l == 0 {
				break // the zeros after a direct write's last record
			}
			end := off + 16 + l
			if uint32(l) == 0xffffffff {
				n++
				end = off + 32 + 8*int(be.Uint32(b[off+20:])) + int(be.Uint32(b[off+16:])) + int(be.Uint32(b[off+24:]))
			}
			off = end + (8-end%8)%8
		}
	}
	return n
}

// journalWritesDirectly reports whether the file system of the journal in
// dir takes the journal's direct writes, which alone give records gaps.
// It asks of a segment: a file system reports its direct I/O alignment
// for regular files only.
func journalWritesDirectly(t *testing.T, dir string) bool {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no segment in %s: %v", dir, err)
	}
	f, err := os.Open(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	direct := false
	rc.Control(func(fd uintptr) { direct = disk.TakesDirect(fd) })
	return direct
}

// firstDiff returns the first byte at which a and b differ, or -1.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b[:len(a)]) {
		return -1 // at once: byte by byte under -race takes seconds a volume
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func TestFrameClass(t *testing.T) {
	for _, n := range []int{minPooledFrame, minPooledFrame + 1, 5000, 1 << 20, 1<<20 + 1, 4<<20 + 300, maxPooledFrame} {
		i, size := frameClass(n)
		if size < n || size > n+n/4+1 {
			t.Errorf("frameClass(%d) size %d: want at least n and at most a quarter more", n, size)
		}
		if j, s2 := frameClass(size); j != i || s2 != size {
			t.Errorf("frameClass(%d) = %d, %d; of its size: %d, %d", n, i, size, j, s2)
		}
		f := getFrame(n)
		if len(f) != n || cap(f) < size || cap(f) > 2*size {
			t.Errorf("getFrame(%d): len %d cap %d, want cap %d (or a recycled one up to twice that)", n, len(f), cap(f), size)
		}
	}
}

// The ledger keeps frames for recycling only up to a bound: a Former that
// holds updates after every frame (a steady write load) must not make the
// secondary keep every frame it ever received.
func TestFrameLedgerKeepsABoundedAmount(t *testing.T) {
	var l frameLedger
	const frame = 4 << 20
	for i := 0; i < 1000; i++ {
		l.add(make([]byte, frame))
		if l.openBytes > maxOpenBytes || len(l.open)*frame > maxOpenBytes {
			t.Fatalf("after %d frames with the Former never empty the ledger keeps %d bytes (%d frames), more than %d",
				i+1, l.openBytes, len(l.open), maxOpenBytes)
		}
	}
	l.release(nil, 0)
	if len(l.open) != 0 || l.openBytes != 0 {
		t.Fatalf("release left %d frames (%d bytes) open", len(l.open), l.openBytes)
	}
}

// Frames follow the write rate, so consecutive frames of a steady load
// fall into neighbouring size classes: a frame a little smaller than the
// buffers recycled so far must get one of them, not a new buffer (a new
// one is zeroed by the runtime and faulted in page by page by the kernel,
// a cost per replicated byte).
func TestFrameReusesARecycledBufferOfALargerClass(t *testing.T) {
	if raceDetector {
		t.Skip("the race detector's sync.Pool drops recycled buffers at random")
	}
	// Two collections empty the pools (each keeps a victim cache for one
	// more), and the huge frames kept are let go: what other tests
	// recycled is out of the way.
	runtime.GC()
	runtime.GC()
	hugeFrames.mu.Lock()
	hugeFrames.used = false
	hugeFrames.mu.Unlock()
	dropIdleHuge()
	// The next put and get on one processor: a buffer put is kept for its
	// processor first.
	const n = 3<<20 + 12345
	_, size := frameClass(n)
	for _, smaller := range []int{n - n/8, n - n/3, n/2 + 1} {
		f := getFrame(n)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		putFrame(f)
		g := getFrame(smaller)
		runtime.ReadMemStats(&after)
		if len(g) != smaller {
			t.Fatalf("getFrame(%d): len %d", smaller, len(g))
		}
		if got := after.TotalAlloc - before.TotalAlloc; got >= uint64(smaller) {
			t.Errorf("getFrame(%d) after a buffer of %d bytes (frame %d) was recycled: allocated %d bytes", smaller, size, n, got)
		}
		putFrame(g)
	}
	// Not one more than twice the frame's own class: the memory a frame
	// holds stays bounded by what it is.
	f := getFrame(n)
	putFrame(f)
	for _, m := range []int{n/2 - 4096, n / 3} {
		g := getFrame(m)
		if _, own := frameClass(m); cap(g) > 2*own {
			t.Errorf("getFrame(%d) got a buffer of %d, its class's %d", m, cap(g), own)
		}
	}
}

// TestPlacedFramesAlignTheirUpdates: a bundle of a sequential writer's
// record set, placed by its head, holds every update of that set on a
// page boundary, where the volumes' direct writes take them in place; its
// buffer is one putFrame recycles. A frame whose head names no set is
// read from its buffer's start.
func TestPlacedFramesAlignTheirUpdates(t *testing.T) {
	for _, beats := range []int{0, 3} {
		var us []recordset.Update
		for i := range 4 {
			us = append(us, recordset.Update{Volume: "v", Kind: recordset.KindWrite, Offset: uint64(i) << 20, Length: 1 << 20,
				Timestamp: int64(i + 1), Seq: uint64(i + 1), Data: bytes.Repeat([]byte{byte(i)}, 1<<20)})
		}
		rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: 1, Group: 1, ReadTime: 9, Horizon: 10, Updates: us}
		set, err := recordset.Encode(nil, rs)
		if err != nil {
			t.Fatal(err)
		}
		hb := make([]transport.Heartbeat, beats)
		for i := range hb {
			hb[i] = transport.Heartbeat{Subsystem: uint16(i + 1), Seq: 1, Horizon: 10}
		}
		wire := transport.EncodeBundle(transport.Bundle{Beats: hb, Sets: [][]byte{set}})
		for range 3 {
			buf, f := placeFrame(wire[:transport.PlaceHead], len(wire))
			copy(f, wire)
			if _, size := frameClass(cap(buf)); size != cap(buf) {
				t.Fatalf("a placed frame's buffer of %d bytes is not one putFrame recycles", cap(buf))
			}
			_, body, err := transport.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			b, err := transport.DecodeBundle(body)
			if err != nil {
				t.Fatal(err)
			}
			got, err := recordset.Decode(b.Sets[0], recordset.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			for i, u := range got.Updates {
				if a := uintptr(unsafe.Pointer(unsafe.SliceData(u.Data))); a%placeAlign != 0 {
					t.Fatalf("%d heartbeats: update %d lies at %#x, not on a page boundary", beats, i, a)
				}
			}
			putFrame(buf)
		}
	}
	head := transport.Frame(transport.TypeHello, make([]byte, transport.PlaceHead))
	buf, f := placeFrame(head[:transport.PlaceHead], 2<<20)
	if &buf[0] != &f[0] || len(f) != 2<<20 {
		t.Fatal("a frame with no record set was placed")
	}
}

// TestHugeFramesAreKeptAcrossCollections: a frame buffer of huge pages
// outlives garbage collections (the pools drop theirs at every one, and a
// new one is faulted in and zeroed 2 MiB at a time), and when the room is
// full of the buffers of a frame size gone by, those make room for the
// present one's rather than keeping it out.
func TestHugeFramesAreKeptAcrossCollections(t *testing.T) {
	poisonFrames = false
	t.Cleanup(func() { poisonFrames = true })
	hugeFrames.mu.Lock()
	hugeFrames.used = false
	hugeFrames.mu.Unlock()
	dropIdleHuge()
	var old [][]byte
	for range maxKeptHuge/(2<<20) + 1 {
		old = append(old, getFrame(2<<20))
	}
	for _, b := range old {
		putFrame(b)
	}
	const n = 10<<20 + 4321
	f := getFrame(n)
	putFrame(f)
	runtime.GC()
	runtime.GC()
	g := getFrame(n)
	if &g[0] != &f[0] {
		t.Fatal("the buffer of a 10 MiB frame, put when the room was full of 2 MiB ones, was made anew after two collections")
	}
	putFrame(g)
}

// TestABufferTooLargeToKeepLeavesTheKeptOnes: a buffer whose memory alone
// is over maxKeptHuge (a backlog's frames fill up to the frame limit, 256
// MiB by default) cannot be kept, and is let go as it is put; the kept
// buffers of the usual frames stay. Letting them go to make room it could
// not have left the next usual frames to be made anew, each faulted in
// and zeroed.
func TestABufferTooLargeToKeepLeavesTheKeptOnes(t *testing.T) {
	poisonFrames = false
	empty := func() {
		hugeFrames.mu.Lock()
		hugeFrames.used = false
		hugeFrames.mu.Unlock()
		dropIdleHuge()
	}
	empty()
	t.Cleanup(func() {
		poisonFrames = true
		empty()
	})
	var usual [][]byte
	for range 4 {
		usual = append(usual, getFrame(hugeFrameMin))
	}
	for _, b := range usual {
		putFrame(b)
	}
	big := getFrame(maxKeptHuge)
	if frameCost(cap(big)) <= maxKeptHuge {
		t.Fatalf("a buffer of %d MiB takes %d MiB, within maxKeptHuge: not a buffer too large to keep", cap(big)>>20, frameCost(cap(big))>>20)
	}
	putFrame(big)
	hugeFrames.mu.Lock()
	kept, bytes := len(hugeFrames.kept), hugeFrames.bytes
	hugeFrames.mu.Unlock()
	if kept != len(usual) || bytes != len(usual)*frameCost(hugeFrameMin) {
		t.Fatalf("after a buffer of %d MiB was put into a room of %d buffers of %d MiB, %d buffers (%d MiB) are kept; want those %d",
			cap(big)>>20, len(usual), hugeFrameMin>>20, kept, bytes>>20, len(usual))
	}
	if b := getFrame(hugeFrameMin); &b[0] != &usual[len(usual)-1][0] {
		t.Fatal("the next usual frame was made anew, not taken from the kept buffers")
	}
}
