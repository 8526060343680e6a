package secondary

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"duplex/apply"
	"duplex/recordset"
	"duplex/transport"
)

// TestPlacedFramesUnderLinkFaults streams, over TCP, large bundles the
// receiver places (two sets of a sequential writer's 512 KiB updates
// each, one of each subsystem, so that the Former always holds ss1's set
// while ss2's of the same interval is a frame behind), through the faults
// a link and a primary make: a frame whose second set fails its checksum
// half way, then resent whole; a frame sent twice; a frame cut in the
// middle by the link's end, the connection made anew and the last frames
// resent. A slow volume keeps the applier reading groups while later
// frames arrive. Every frame buffer is poisoned as it is recycled: the
// volumes and the journal must hold exactly what was sent.
func TestPlacedFramesUnderLinkFaults(t *testing.T) {
	const update = 512 << 10
	sets := 24
	if raceDetector {
		sets = 12 // every fault all the same, in half the time
	}
	cutAt := sets / 2
	volSize := int64(sets * 2 * update)
	ln, err := transport.ListenTCP("127.0.0.1:0", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var aligned atomic.Int64
	r := startFramesRig(t, volSize, func(_ string, tg apply.Target) apply.Target {
		return slowThroughTarget{slowTarget{Target: tg, pause: 5 * time.Millisecond}, &aligned}
	}, ln)
	sec := r.sec

	want := map[string][]byte{"vol1": make([]byte, volSize), "vol2": make([]byte, volSize)}
	set := func(sub, vol string, seq uint64, ts int64) []byte {
		rs := &recordset.RecordSet{Session: "s", Subsystem: sub, Seq: seq, Group: seq, ReadTime: ts, Horizon: ts + 500}
		for k := range 2 {
			off := (int(seq)-1)*2*update + k*update
			data := want[vol][off : off+update]
			for i := range data {
				data[i] = byte(int(seq)*31 + k*13 + i*7 + len(vol)*int(sub[2]))
			}
			rs.Updates = append(rs.Updates, recordset.Update{Volume: vol, Kind: recordset.KindWrite, Offset: uint64(off), Length: update,
				Timestamp: ts + 2*int64(k), Seq: 2*seq + uint64(k), Data: bytes.Clone(data)})
		}
		return encodeSet(t, rs)
	}
	// frames[n] brings ss2's set of interval n-1 and ss1's of interval n,
	// whose group waits for ss2's in frames[n+1]; the last one ss2's alone.
	frames := make([][]byte, sets+2)
	for n := 1; n <= sets+1; n++ {
		ts := int64(n) * 1000
		var b [][]byte
		if n > 1 {
			b = append(b, set("ss2", "vol2", uint64(n-1), ts-999)) // between ss1's
		}
		if n <= sets {
			b = append(b, set("ss1", "vol1", uint64(n), ts))
		}
		frames[n] = transport.EncodeBundle(transport.Bundle{Sets: b})
	}

	link := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr())
		if err != nil {
			t.Fatal(err)
		}
		send(t, c, r.hello())
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil { // the welcome
			t.Fatal(err)
		}
		if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:]))); err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, c) // acknowledgements
		return c
	}
	c := link()
	for n := 1; n <= cutAt; n++ {
		switch n % 4 {
		case 2:
			// The second set fails its checksum half way through its
			// payload; the first is whole and taken. The primary resends
			// the frame (the first set now a duplicate).
			bad := bytes.Clone(frames[n])
			bad[len(bad)-update/2] ^= 0xff
			send(t, c, bad)
		case 3:
			send(t, c, frames[n]) // sent twice: a duplicate
		}
		send(t, c, frames[n])
	}
	// The link ends in the middle of the next frame: the receiver has shown
	// placement its head and read part of it into the buffer.
	cut := frames[cutAt+1]
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(cut)))
	if _, err := c.Write(append(hdr[:], cut[:len(cut)/2]...)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	c.Close()
	// Under -race on a loaded machine the poison and the slow volume take
	// minutes.
	deadline := time.Now().Add(3 * time.Minute)
	for sec.Stats().Connected {
		if time.Now().After(deadline) {
			r.stalled("the secondary did not see the link end")
		}
		time.Sleep(time.Millisecond)
	}
	// The frames sent before the last few were read by now: a link's end
	// is read after what arrived, and a close that resets (acknowledgements
	// unread) loses only the bytes this side had not sent, at most its
	// send buffer (4 MiB by Linux's default). The groups they complete are
	// formed, and all but the last two handed to the applier (its queue
	// holds one): a stall that applied fewer lost some on the way.
	at := sec.Stats()
	r.note("at the first link's end: journaled group %d (%d bytes), applied %d (%d bytes), %d record sets (%d duplicates), %d corrupt frames, last error %q, stopped %q",
		at.JournaledGroup, at.BytesJournaled, at.Group, at.BytesApplied, at.RecordSets, at.Duplicates, at.CorruptFrames, at.LastError, at.Stopped)
	c = link()
	defer c.Close()
	// The primary resends what was not acknowledged: from the frame before
	// the cut one on.
	for n := cutAt; n <= sets+1; n++ {
		send(t, c, frames[n])
	}
	r.waitApplied(uint64(2*sets*2*update), deadline)
	r.checkVolumes(want, "what was sent", update, "a recycled frame was read again")
	if aligned.Load() == 0 {
		t.Fatal("no update lay on a page boundary: the frames were not placed")
	}
	st := sec.Stats()
	if st.CorruptFrames == 0 || st.Duplicates == 0 {
		t.Fatalf("the faults did not reach the secondary: %d corrupt, %d duplicates", st.CorruptFrames, st.Duplicates)
	}
	r.stop()
	if updates := r.checkJournal(want, "a recycled frame was written"); updates != 2*2*sets {
		t.Fatalf("the journal holds %d updates, %d were sent", updates, 2*2*sets)
	}
}

// send writes frame f to c as the TCP transport frames it.
func send(t *testing.T, c net.Conn, f []byte) {
	t.Helper()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(f)))
	if _, err := c.Write(append(hdr[:], f...)); err != nil {
		t.Fatal(err)
	}
}
