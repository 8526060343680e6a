package secondary

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
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
// middle by the link's end, the connection made anew and every record set
// past what its Welcome says was received resent, as a primary does. The
// Welcome must hold everything acknowledged on the first link. A slow volume keeps the applier reading groups while later
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
	// encoded[sub][seq] is record set seq of sub, as the primary sends it.
	encoded := map[string][][]byte{"ss1": make([][]byte, sets+1), "ss2": make([][]byte, sets+1)}
	set := func(sub, vol string, seq uint64, ts int64) {
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
		encoded[sub][seq] = encodeSet(t, rs)
	}
	// Frame n brings ss2's set of interval n-1 and ss1's of interval n,
	// whose group waits for ss2's in frame n+1; the last one ss2's alone.
	type setID struct {
		sub string
		seq uint64
	}
	inFrame := make([][]setID, sets+2)
	for n := 1; n <= sets+1; n++ {
		ts := int64(n) * 1000
		if n > 1 {
			set("ss2", "vol2", uint64(n-1), ts-999) // between ss1's
			inFrame[n] = append(inFrame[n], setID{"ss2", uint64(n - 1)})
		}
		if n <= sets {
			set("ss1", "vol1", uint64(n), ts)
			inFrame[n] = append(inFrame[n], setID{"ss1", uint64(n)})
		}
	}
	// bundle is frame n with the record sets past received only (nil:
	// none), as the primary forms it again after a Welcome.
	bundle := func(n int, received map[string]uint64) []byte {
		var b [][]byte
		for _, id := range inFrame[n] {
			if id.seq > received[id.sub] {
				b = append(b, encoded[id.sub][id.seq])
			}
		}
		if len(b) == 0 {
			return nil
		}
		return transport.EncodeBundle(transport.Bundle{Sets: b})
	}
	frames := make([][]byte, sets+2)
	for n := 1; n <= sets+1; n++ {
		frames[n] = bundle(n, nil)
	}

	p := r.dialTCPPrimary(ln.Addr())
	c := p.c
	for n := 1; n <= cutAt; n++ {
		switch n % 4 {
		case 2:
			// The second set fails its checksum half way through its
			// payload; the first is whole and taken. The primary resends
			// the frame (the first set now a duplicate).
			bad := bytes.Clone(frames[n])
			bad[len(bad)-update/2] ^= 0xff
			r.sendTCP(c, bad)
		case 3:
			r.sendTCP(c, frames[n]) // sent twice: a duplicate
		}
		r.sendTCP(c, frames[n])
	}
	// The link ends in the middle of the next frame: the receiver has shown
	// placement its head and read part of it into the buffer.
	cut := frames[cutAt+1]
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(cut)))
	r.writeTCP(c, append(hdr[:], cut[:len(cut)/2]...))
	time.Sleep(20 * time.Millisecond)
	c.Close()
	acked := p.ended()
	// Under -race on a loaded machine the poison and the slow volume take
	// minutes.
	deadline := time.Now().Add(3 * time.Minute)
	for sec.Stats().Connected {
		if time.Now().After(deadline) {
			r.stalled("the secondary did not see the link end")
		}
		time.Sleep(time.Millisecond)
	}
	// What the secondary read of the frames sent depends on how far it
	// got before the link ended: a close that resets (acknowledgements
	// unread) loses the bytes this side had not sent, up to its send
	// buffer, and once an acknowledgement cannot be sent the secondary
	// closes its end and loses what it had not read. Its Welcome says
	// what it holds; nothing it acknowledged may be missing.
	at := sec.Stats()
	r.note("at the first link's end: journaled group %d (%d bytes), applied %d (%d bytes), %d record sets (%d duplicates), %d corrupt frames, last error %q, stopped %q; acknowledged %v, received %v",
		at.JournaledGroup, at.BytesJournaled, at.Group, at.BytesApplied, at.RecordSets, at.Duplicates, at.CorruptFrames, at.LastError, at.Stopped,
		acked.Through, acked.Received)
	p = r.dialTCPPrimary(ln.Addr())
	c = p.c
	defer c.Close()
	w := p.welcome
	r.note("the second link's Welcome: group %d, through %v, received %v", w.Group, w.Through, w.Received)
	checkNothingAckedLost(t, acked, w)
	// The primary resends every record set past what the Welcome says
	// the secondary received, in order, as the mover does.
	have := map[string]uint64{}
	for _, sub := range framesSubs {
		have[sub] = max(w.Through[sub], w.Received[sub])
	}
	for n := 1; n <= sets+1; n++ {
		if f := bundle(n, have); f != nil {
			r.sendTCP(c, f)
		}
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

// tcpWait bounds a wait of a test's primary on a TCP link (a write the
// secondary does not take, a Welcome it does not send): under -race on a
// loaded machine the poison and the slow volume take minutes, and a wait
// past that is a stall, reported with where the secondary waits
// (stalled), not the package's timeout with the test's own stack alone.
const tcpWait = 3 * time.Minute

// send writes frame f to c as the TCP transport frames it.
func send(t *testing.T, c net.Conn, f []byte) {
	t.Helper()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(f)))
	if _, err := c.Write(append(hdr[:], f...)); err != nil {
		t.Fatal(err)
	}
}

// sendTCP is send within tcpWait.
func (r *framesRig) sendTCP(c net.Conn, f []byte) {
	r.t.Helper()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(f)))
	r.writeTCP(c, append(hdr[:], f...))
}

// writeTCP writes b to c within tcpWait.
func (r *framesRig) writeTCP(c net.Conn, b []byte) {
	r.t.Helper()
	if err := c.SetWriteDeadline(time.Now().Add(tcpWait)); err != nil {
		r.t.Fatal(err)
	}
	n, err := c.Write(b)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		r.stalled("the secondary took %d of %d bytes written to it in %s", n, len(b), tcpWait)
	}
	if err != nil {
		r.t.Fatal(err)
	}
}

// tcpPrimary is a test's primary on a TCP link: it said hello, read the
// Welcome, and reads every acknowledgement after it, keeping what they
// said the secondary holds.
type tcpPrimary struct {
	c       net.Conn
	welcome transport.Position
	done    chan struct{}
	// acked is the last acknowledgement's Through and the highest
	// Received of any, once done is closed.
	acked transport.Position
	mu    sync.Mutex
	group uint64 // the last group acknowledged
}

// dialTCPPrimary links a tcpPrimary to the rig's secondary at addr with
// the rig's hello.
func (r *framesRig) dialTCPPrimary(addr string) *tcpPrimary {
	t := r.t
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r.sendTCP(c, r.hello())
	p := &tcpPrimary{c: c, done: make(chan struct{}),
		acked: transport.Position{Through: map[string]uint64{}, Received: map[string]uint64{}}}
	if err := c.SetReadDeadline(time.Now().Add(tcpWait)); err != nil {
		t.Fatal(err)
	}
	typ, pos, err := recvPosition(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		r.stalled("no Welcome in %s", tcpWait)
	}
	if err != nil || typ != transport.TypeWelcome {
		t.Fatalf("no Welcome: frame type %d, %v", typ, err)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	p.welcome = pos
	go func() {
		defer close(p.done)
		for {
			typ, pos, err := recvPosition(c)
			if err != nil {
				return
			}
			if typ != transport.TypeAck {
				continue
			}
			p.mu.Lock()
			p.group = max(p.group, pos.Group)
			p.mu.Unlock()
			p.acked.Through = pos.Through
			for sub, n := range pos.Received {
				p.acked.Received[sub] = max(p.acked.Received[sub], n)
			}
		}
	}()
	return p
}

// waitThrough waits until the secondary has acknowledged group g
// journaled, and fails the test after 30 s.
func (p *tcpPrimary) waitThrough(t *testing.T, g uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p.mu.Lock()
		acked := p.group
		p.mu.Unlock()
		if acked >= g {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %d not acknowledged in 5 s (acknowledged %d)", g, acked)
		}
		time.Sleep(time.Millisecond)
	}
}

// ended returns what the secondary acknowledged on the link, once it is
// closed.
func (p *tcpPrimary) ended() transport.Position {
	<-p.done
	return p.acked
}

// recvPosition reads the next frame from c and decodes the Position it
// carries, if it does (a Welcome, an acknowledgement).
func recvPosition(c net.Conn) (byte, transport.Position, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, transport.Position{}, err
	}
	f := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(c, f); err != nil {
		return 0, transport.Position{}, err
	}
	typ, body, err := transport.Open(f)
	if err != nil {
		return 0, transport.Position{}, err
	}
	if typ != transport.TypeWelcome && typ != transport.TypeAck {
		return typ, transport.Position{}, nil
	}
	pos, err := transport.DecodePosition(body)
	return typ, pos, err
}

// checkNothingAckedLost fails the test unless the Welcome w of the same
// primary process's next link holds everything acknowledged on the one
// before (acked: its last Through, its highest Received): the groups
// journaled, and the record sets received, which the secondary keeps for
// that process.
func checkNothingAckedLost(t *testing.T, acked, w transport.Position) {
	t.Helper()
	for sub, n := range acked.Through {
		if w.Through[sub] < n {
			t.Fatalf("the Welcome holds %s through record set %d, %d was acknowledged journaled", sub, w.Through[sub], n)
		}
	}
	for sub, n := range acked.Received {
		if max(w.Through[sub], w.Received[sub]) < n {
			t.Fatalf("the Welcome holds %s's record sets through %d (received %d), %d was acknowledged received on the link before, to the same primary process",
				sub, w.Through[sub], w.Received[sub], n)
		}
	}
}
