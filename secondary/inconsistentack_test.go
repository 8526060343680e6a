package secondary

import (
	"slices"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// ackAfter sends sets and returns the acknowledgement of the last one's
// group.
func ackAfter(t *testing.T, conn transport.Conn, sets ...*recordset.RecordSet) transport.Position {
	t.Helper()
	for _, rs := range sets {
		sendRecordSet(t, conn, rs)
	}
	last := sets[len(sets)-1].Group
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		typ, body, err := recvFrame(conn, time.Until(deadline))
		if err != nil {
			t.Fatalf("no acknowledgement of group %d: %v", last, err)
		}
		if typ != transport.TypeAck {
			continue
		}
		p, err := transport.DecodePosition(body)
		if err != nil {
			t.Fatal(err)
		}
		if p.Group >= last {
			return p
		}
	}
	t.Fatalf("no acknowledgement of group %d within 10s", last)
	return transport.Position{}
}

// TestPositionsNameTheVolumesConsistentAsOfNoTime: the secondary's Welcome
// and acknowledgements name the volumes it holds consistent as of no time,
// as its journaled groups leave them, so the primary claims no time for
// them: those it knows of (a first copy, an inconsistent resync) and those
// it does not (a hold given up, a volume never copied here). A copy that
// ends takes a volume out; a restart keeps the names.
func TestPositionsNameTheVolumesConsistentAsOfNoTime(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
	conn, typ, body := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	if w, err := transport.DecodePosition(body); err != nil || !slices.Equal(w.Inconsistent, []string{"vol1", "vol2"}) {
		t.Fatalf("the Welcome of a secondary that never held a copy names %q (err %v), want vol1 and vol2", w.Inconsistent, err)
	}
	want := func(when string, p transport.Position, names ...string) {
		t.Helper()
		if !slices.Equal(p.Inconsistent, names) {
			t.Errorf("%s: position of group %d names %q consistent as of no time, want %q", when, p.Group, p.Inconsistent, names)
		}
	}
	want("first copies begun", ackAfter(t, conn, writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy))), "vol1", "vol2")
	want("first copies ended", ackAfter(t, conn, writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd))))
	inconsistent := recordset.Marker{State: recordset.StateResync, Bytes: 1 << 20, Inconsistent: true}.Update("vol2")
	want("an inconsistent resync of vol2", ackAfter(t, conn, writeSet(3, 30_000, inconsistent)), "vol2")

	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.open()
	conn, _, body = r.dial(r.hello())
	w, err := transport.DecodePosition(body)
	if err != nil {
		t.Fatal(err)
	}
	want("restarted", w, "vol2")
	want("vol2's resync ended", ackAfter(t, conn, writeSet(4, 40_000, mark("vol2", recordset.StateCopyEnd))))
}
