package secondary

import (
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// TestPrimaryRefusedDuringAFenceIsNotToldItFailed: while a fence waits for
// the volumes (minutes after a backlog), a primary that reconnects is
// refused, and its operator sees only the refusal's reason. The fence has not
// failed: its identity is simply not written yet. Telling the primary that
// it could not be written, and that a restarted secondary would take it
// again, is a claim that does not hold.
func TestPrimaryRefusedDuringAFenceIsNotToldItFailed(t *testing.T) {
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
	_, typ, body := r.dial(r.hello())
	if typ != transport.TypeRefuse {
		t.Fatalf("a primary reconnecting while the fence waits: frame type %d, want a refusal", typ)
	}
	reason, err := transport.DecodeRefuse(body)
	if err != nil {
		t.Fatal(err)
	}
	open()
	if err := <-fenceDone; err != nil {
		t.Fatalf("fence: %v", err)
	}
	if strings.Contains(reason, "could not be written") || strings.Contains(reason, "would take this primary again") {
		t.Fatalf("refused while the fence waits for the volumes (it then succeeded) with: %q", reason)
	}
}
