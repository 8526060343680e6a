package secondary

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/journal"
	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
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
	dir := t.TempDir()
	vols := map[string]*volume.Volume{}
	for _, name := range []string{"vol1", "vol2"} {
		v, err := volume.Open(filepath.Join(dir, name+".img"), volSize)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		vols[name] = v
	}
	subs := []string{"ss1", "ss2"}
	sec, err := Open(Config{Session: "s", Subsystems: subs, Volumes: vols,
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var aligned atomic.Int64
	for name, tg := range sec.targets {
		sec.targets[name] = slowThroughTarget{slowTarget{Target: tg, pause: 5 * time.Millisecond}, &aligned}
	}
	ln, err := transport.ListenTCP("127.0.0.1:0", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sec.Run(ctx, ln) }()
	closed := false
	defer func() {
		if !closed {
			cancel()
			<-done
			sec.Close()
		}
	}()

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
		b, err := recordset.Encode(nil, rs)
		if err != nil {
			t.Fatal(err)
		}
		return b
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
		send(t, c, transport.EncodeHello(transport.Hello{Session: "s", Subsystems: subs, Instance: 7,
			Volumes: []transport.VolumeInfo{{Name: "vol1", Size: volSize}, {Name: "vol2", Size: volSize}}}))
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
			t.Fatal("the secondary did not see the link end")
		}
		time.Sleep(time.Millisecond)
	}
	c = link()
	defer c.Close()
	// The primary resends what was not acknowledged: from the frame before
	// the cut one on.
	for n := cutAt; n <= sets+1; n++ {
		send(t, c, frames[n])
	}
	for sec.Stats().BytesApplied < uint64(2*sets*2*update) {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d of %d bytes within 3 minutes", sec.Stats().BytesApplied, 2*sets*2*update)
		}
		time.Sleep(time.Millisecond)
	}
	for name, v := range vols {
		got := make([]byte, volSize)
		if err := v.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, want[name]); i >= 0 {
			t.Fatalf("%s differs from what was sent at byte %d (update %d): got %#x, want %#x; a recycled frame was read again",
				name, i, i/update, got[i], want[name][i])
		}
	}
	if aligned.Load() == 0 {
		t.Fatal("no update lay on a page boundary: the frames were not placed")
	}
	st := sec.Stats()
	if st.CorruptFrames == 0 || st.Duplicates == 0 {
		t.Fatalf("the faults did not reach the secondary: %d corrupt, %d duplicates", st.CorruptFrames, st.Duplicates)
	}
	closed = true
	cancel()
	<-done
	sec.Close()
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
				return fmt.Errorf("group %d: the update of %s at %d differs from what was sent at its byte %d; a recycled frame was written",
					index, u.Volume, u.Offset, i)
			}
			updates++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if updates != 2*2*sets {
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
