package mover

import (
	"bytes"
	"errors"
	"testing"

	"duplex/consistency"
	"duplex/recordset"
	"duplex/transport"
)

// A record set can be partly journaled: a group stops inside it where
// another subsystem's horizon held the consistency time back. The secondary
// then restarts with smaller limits. The primary process is the same, so the
// secondary lets the record set after Through repeat updates at or before
// its consistency time; the mover re-forms that record set into several and
// numbers them on from Through. Every part must be one the secondary takes:
// a journaled update in the second part is refused as stale, the secondary
// forgets the instance, and from then on even the first part is refused.
func TestReformOfPartlyJournaledRecordSetIsAccepted(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}, sidefile: 64 << 20})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	const n = 8
	for i := range n {
		p.write(t, "ss1", bytes.Repeat([]byte{byte(i)}, volSize), 0)
	}
	p.mover.Cut() // one record set of 8 MiB: the baseline takes it
	rs := l.recordSet()
	if rs.Seq != 1 || len(rs.Updates) != n {
		t.Fatalf("record set %d with %d updates, want 1 with %d", rs.Seq, len(rs.Updates), n)
	}
	// The secondary journaled a group through the sixth update: record set
	// 1 is not whole in it, so Through stays 0.
	ct := rs.Updates[5].Timestamp
	l.ack(transport.Position{Group: 1, Time: ct, Through: map[string]uint64{"ss1": 0}, Received: map[string]uint64{"ss1": 1}})
	waitFor(t, "the receipt", func() bool { return p.mover.Stats().Connected })
	l.conn.Close()

	// Restarted with smaller limits: it holds nothing beyond Through.
	l2, _ := p.accept(t)
	l2.welcome(transport.Position{Group: 1, Time: ct, Through: map[string]uint64{"ss1": 0}, Limits: smallLimits})
	f := consistency.New(session, []string{"ss1"}, consistency.Start{Time: ct, Through: map[string]uint64{"ss1": 0}, Resent: true})
	got := 0
	for got < n {
		typ, body := l2.next()
		if typ != transport.TypeRecordSet {
			t.Fatalf("frame of type %d, want a record set", typ)
		}
		rs, err := recordset.Decode(body, recordsetLimits(smallLimits))
		if err != nil {
			t.Fatalf("record set refused for its size: %v", err)
		}
		if _, err := f.Add(rs); err != nil {
			if errors.Is(err, consistency.ErrStale) {
				t.Fatalf("re-formed record set %d (%d updates) refused by the secondary: %v", rs.Seq, len(rs.Updates), err)
			}
			t.Fatalf("record set %d: %v", rs.Seq, err)
		}
		got += len(rs.Updates)
	}
}
