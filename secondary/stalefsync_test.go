package secondary

import (
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// TestASlowIdentityFsyncAtAStaleRecordSetKeepsStatusAnswering: a record
// set stamped at or before the consistency time is refused, and the
// identity is written first to name no process (none may resend what is
// journaled any more). That write's fsync hangs, as on a slow or failing
// disk: status must answer meanwhile, the primary on the link must hear
// from the secondary (a receipt), rather than nothing until it gives the
// link up for silence, and once the disk answers it is told why on that
// link, the identity naming nobody.
func TestASlowIdentityFsyncAtAStaleRecordSetKeepsStatusAnswering(t *testing.T) {
	r := newIdentityRig(t)
	conn, typ, _ := r.dial(r.hello()) // process 7
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendRecordSet(t, conn, subsystemSet("ss1", 1, 1_000, 2_000,
		recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096, Timestamp: 1_000}))
	sendRecordSet(t, conn, subsystemSet("ss2", 1, 0, 2_000))
	if reason, acked := answers(t, conn, 0); acked != 1 {
		t.Fatalf("acknowledged through group %d (refusal %q), want 1", acked, reason)
	}
	if id := r.identityFile(); !strings.Contains(id, `"journaled_instance": "7"`) {
		t.Fatalf("identity after process 7's first group: %s, want it named", id)
	}

	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	defer release()
	r.in.Inject(disk.Fault{Op: disk.OpSync, Under: r.site, Hang: gate})
	// Stamped 1500, before the consistency time (2000) group 1 reached.
	sendRecordSet(t, conn, subsystemSet("ss1", 2, 1_500, 3_000,
		recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: 4096, Timestamp: 1_500}))
	for deadline := time.Now().Add(30 * time.Second); r.in.Injected(disk.OpSync) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the identity was not written within 30s of the stale record set")
		}
	}

	// The fsync holds until released: an answer that does not come while
	// it holds waits on it.
	if _, ok := statusWithin(r.sec, 15*time.Second); !ok {
		t.Error("status did not answer while the identity's fsync was held (15s): it waits on the disk")
	}
	typ, body, err := recvFrame(conn, 15*time.Second)
	switch {
	case err != nil:
		t.Errorf("the primary heard nothing while the identity's fsync was held: %v", err)
	case typ != transport.TypeAck:
		reason, _ := refusalReason(body)
		t.Errorf("while the identity's fsync was held the primary was sent frame type %d (%q), want a receipt", typ, reason)
	}
	release()

	if err == nil {
		reason, acked := answers(t, conn, 1)
		if !strings.Contains(reason, "stamped 1500") {
			t.Errorf("once the disk answered: refusal %q, acknowledged through %d; want the stale record set refused", reason, acked)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		id := r.identityFile()
		if !strings.Contains(id, "instance") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("identity %s 30s after the disk answered, want it to name no process", id)
		}
	}
}
