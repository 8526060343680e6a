package secondary

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// TestLinkCutAtEveryPlaceAroundAFrameBoundary cuts a TCP link at each byte
// around the boundary between two placed frames, and at the edges inside
// the second that its reading turns on (its length, the head shown to
// placement, a checksummed piece, its last byte), by a close and by a
// reset. Whatever the secondary read, the next Welcome must hold every
// group and record set acknowledged, the volumes must hold the groups
// applied and nothing after them, and a primary that sends again what the
// Welcome says is missing must have every set applied, once.
func TestLinkCutAtEveryPlaceAroundAFrameBoundary(t *testing.T) {
	const update, sets = 600 << 10, 4 // frames of 1.2 MiB, which are placed
	volSize := int64(sets * update)
	want := map[string][]byte{"vol1": make([]byte, volSize), "vol2": make([]byte, volSize)}
	encoded := map[string][][]byte{"ss1": make([][]byte, sets+1), "ss2": make([][]byte, sets+1)}
	for seq := 1; seq <= sets; seq++ {
		for _, sub := range framesSubs {
			vol, ts := "vol1", int64(seq)*1000
			if sub == "ss2" {
				vol, ts = "vol2", ts+1
			}
			off := (seq - 1) * update
			data := want[vol][off : off+update]
			for i := range data {
				data[i] = byte(seq*31 + i*7 + len(sub)*int(sub[2]))
			}
			encoded[sub][seq] = encodeSet(t, &recordset.RecordSet{Session: "s", Subsystem: sub, Seq: uint64(seq), Group: uint64(seq),
				ReadTime: ts, Horizon: ts + 500, Updates: []recordset.Update{{Volume: vol, Kind: recordset.KindWrite, Offset: uint64(off),
					Length: update, Timestamp: ts, Seq: uint64(seq), Data: bytes.Clone(data)}}})
		}
	}
	// Frame n brings ss2's set n-1 and ss1's set n, those past have.
	frame := func(n int, have map[string]uint64) []byte {
		var b [][]byte
		if n > 1 && uint64(n-1) > have["ss2"] {
			b = append(b, encoded["ss2"][n-1])
		}
		if n <= sets && uint64(n) > have["ss1"] {
			b = append(b, encoded["ss1"][n])
		}
		if len(b) == 0 {
			return nil
		}
		return transport.EncodeBundle(transport.Bundle{Sets: b})
	}
	var stream []byte
	var boundary int // where frame 3's length starts
	for n := 1; n <= sets+1; n++ {
		if n == 3 {
			boundary = len(stream)
		}
		f := frame(n, nil)
		stream = binary.BigEndian.AppendUint32(stream, uint32(len(f)))
		stream = append(stream, f...)
	}
	third := 4 + len(frame(3, nil))
	var cuts []int
	for d := -5; d <= 5; d++ {
		cuts = append(cuts, boundary+d)
	}
	for _, at := range []int{4 + transport.PlaceHead, 4 + frameSumChunk, third / 2, third} {
		cuts = append(cuts, boundary+at-1, boundary+at, boundary+at+1)
	}
	for _, reset := range []bool{false, true} {
		for _, cut := range cuts {
			how := "closed"
			if reset {
				how = "reset"
			}
			t.Run(fmt.Sprintf("%s at %+d", how, cut-boundary), func(t *testing.T) {
				ln, err := transport.ListenTCP("127.0.0.1:0", nil, 0)
				if err != nil {
					t.Fatal(err)
				}
				r := startFramesRig(t, volSize, nil, ln)
				p := r.dialTCPPrimary(ln.Addr())
				if _, err := p.c.Write(stream[:min(cut, len(stream))]); err != nil {
					t.Fatal(err)
				}
				if reset {
					// Whatever this side had not sent is lost, and the
					// acknowledgements in flight with it.
					p.c.(*net.TCPConn).SetLinger(0)
					p.c.Close()
				} else {
					// Every acknowledgement sent until the secondary
					// closes its end is read.
					p.c.(*net.TCPConn).CloseWrite()
				}
				acked := p.ended()
				p.c.Close()
				deadline := time.Now().Add(time.Minute)
				for r.sec.Stats().Connected {
					if time.Now().After(deadline) {
						r.stalled("the secondary did not see the link end")
					}
					time.Sleep(time.Millisecond)
				}
				for st := r.sec.Stats(); st.Group < st.JournaledGroup; st = r.sec.Stats() {
					if time.Now().After(deadline) {
						r.stalled("the journaled groups not applied")
					}
					time.Sleep(time.Millisecond)
				}
				applied := int(r.sec.Stats().Group)
				upTo := map[string][]byte{}
				for vol, b := range want {
					upTo[vol] = make([]byte, len(b))
					copy(upTo[vol], b[:applied*update])
				}
				r.checkVolumes(upTo, fmt.Sprintf("groups 1 to %d", applied), update, "a group applied without one it depends on, or with part of a later one")

				p = r.dialTCPPrimary(ln.Addr())
				defer p.c.Close()
				w := p.welcome
				checkNothingAckedLost(t, acked, w)
				have := map[string]uint64{}
				for _, sub := range framesSubs {
					have[sub] = max(w.Through[sub], w.Received[sub])
				}
				for n := 1; n <= sets+1; n++ {
					if f := frame(n, have); f != nil {
						r.sendTCP(p.c, f)
					}
				}
				r.waitApplied(uint64(2*sets*update), deadline)
				r.checkVolumes(want, "what was sent", update, "a set sent again from the Welcome was lost")
				r.stop()
				if updates := r.checkJournal(want, "a journaled update differs from what was sent"); updates != 2*sets {
					t.Fatalf("the journal holds %d updates, %d were sent", updates, 2*sets)
				}
			})
		}
	}
}
