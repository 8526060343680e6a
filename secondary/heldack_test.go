package secondary

import (
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// ackThrough reads the Acks on conn until one acknowledges group g.
func ackThrough(t *testing.T, conn transport.Conn, g uint64) transport.Position {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		typ, body, err := recvFrame(conn, time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for the ack of group %d: %v", g, err)
		}
		if typ != transport.TypeAck {
			continue
		}
		p, err := transport.DecodePosition(body)
		if err != nil {
			t.Fatal(err)
		}
		if p.Group >= g {
			return p
		}
	}
	t.Fatalf("no ack of group %d within 10s", g)
	return transport.Position{}
}

// TestAcksUnderAHoldSayWhatTheSecondaryRecoversTo: while a resync holds the
// volumes, the secondary acknowledges the groups it journals (the primary
// frees its sidefile by them) and says in each Ack that it recovers only to
// the group applied before the resync; once the resync ends, it recovers to
// what it journaled again, and says nothing more.
func TestAcksUnderAHoldSayWhatTheSecondaryRecoversTo(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendRecordSet(t, conn, writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy),
		mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)))
	if p := ackThrough(t, conn, 1); p.Recoverable != 0 || p.RecoversTo() != p.Time {
		t.Fatalf("no hold, yet the ack of group 1 says the secondary recovers to %d of %d journaled", p.RecoversTo(), p.Time)
	}
	applied := r.sec.Position().Time
	sendRecordSet(t, conn, writeSet(2, 20_000, mark("vol1", recordset.StateResync),
		recordset.Update{Volume: "vol1", Kind: recordset.KindCopy, Offset: 0, Length: 4096, Data: make([]byte, 4096)}))
	sendRecordSet(t, conn, writeSet(3, 30_000, write("vol2", 0)))
	p := ackThrough(t, conn, 3)
	if p.RecoversTo() != applied || p.Time <= applied {
		t.Fatalf("under the hold the ack of group %d says the secondary recovers to %d (journaled %d); it recovers to %d, the group applied before the resync",
			p.Group, p.RecoversTo(), p.Time, applied)
	}
	sendRecordSet(t, conn, writeSet(4, 40_000, mark("vol1", recordset.StateCopyEnd)))
	if p := ackThrough(t, conn, 4); p.Recoverable != 0 || p.RecoversTo() != p.Time {
		t.Fatalf("the resync ended, yet the ack of group 4 says the secondary recovers to %d of %d journaled", p.RecoversTo(), p.Time)
	}
}
