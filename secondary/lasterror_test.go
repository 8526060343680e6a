package secondary

import (
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// TestLastErrorClearsOnceAPrimaryReplicates: a refusal is the secondary's
// last error, with its time, while no primary replicates; once a primary
// links and a group of its record sets is journaled, the condition that set
// it is gone and status no longer shows it as if current.
func TestLastErrorClearsOnceAPrimaryReplicates(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	bad := r.hello()
	bad.Session = "other"
	before := time.Now()
	if _, typ, _ := r.dial(bad); typ != transport.TypeRefuse {
		t.Fatalf("answer to another session's hello: frame type %d, want a refusal", typ)
	}
	st := r.sec.Stats()
	if st.LastError == "" {
		t.Fatal("a refused primary left no last error")
	}
	if st.LastErrorAt.Before(before) || st.LastErrorAt.After(time.Now()) {
		t.Errorf("last error at %v, want the time of the refusal (after %v)", st.LastErrorAt, before)
	}

	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("answer to a matching hello: frame type %d, want a welcome", typ)
	}
	sendRecordSet(t, conn, writeSet(1, 1000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096}))
	if reason, acked := answers(t, conn, 0); acked != 1 {
		t.Fatalf("acknowledged through group %d, want 1 (refusal %q)", acked, reason)
	}
	if st := r.sec.Stats(); st.LastError != "" || !st.LastErrorAt.IsZero() {
		t.Errorf("a primary replicates, yet the last error still reads %q (at %v)", st.LastError, st.LastErrorAt)
	}
}
