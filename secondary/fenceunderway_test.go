package secondary

import (
	"sync"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// TestAFenceUnderWayIsNotReportedAsOne: while a fence waits for the volumes,
// nothing records it, and a restart (a kill -9) leaves the secondary
// unfenced, following its old generation. Status must not say it is fenced
// until it is: an operator who reads "fenced" then kills the daemon would
// find the old primary taken again.
func TestAFenceUnderWayIsNotReportedAsOne(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	r.sec.targets["a"] = gatedTarget{Target: r.sec.targets["a"], gate: gate}

	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("answer to a matching hello: frame type %d, want a welcome", typ)
	}
	conn = conn.(settledConn).Conn
	sendRecordSet(t, conn, writeSet(1, 1000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096}))
	if reason, acked := answers(t, conn, 0); acked != 1 {
		t.Fatalf("acknowledged through group %d, want 1 (refusal %q)", acked, reason)
	}
	before, _ := r.sec.Generation()
	fenceDone := make(chan error, 1)
	go func() {
		_, err := r.sec.Fence()
		fenceDone <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); r.sec.Stats().Connected; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fence did not disconnect the primary")
		}
	}
	g, fenced := r.sec.Generation()
	open()
	if err := <-fenceDone; err != nil {
		t.Fatalf("fence: %v", err)
	}
	if fenced {
		t.Fatalf("while the fence waited for the volumes (nothing recorded) the secondary reported itself fenced, at generation %s (it followed %s)", g, before)
	}
	if g2, fenced := r.sec.Generation(); !fenced || g2 == before {
		t.Fatalf("after the fence: generation %s, fenced %v; want a new generation, fenced", g2, fenced)
	}
}
