package mover

import (
	"bytes"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// A gap the secondary reports is sent again at once, even while it says it
// waits on its disk; but it reads nothing until the wait is over, and the
// copy sent again waits in the link's buffers with the rest: the receipts
// of the wait, each reporting the same gap, must not have it sent again
// every few intervals, each copy but the first a duplicate dropped.
func TestAGapIsSentAgainOnceWhileTheSecondaryWaits(t *testing.T) {
	const interval = 20 * time.Millisecond
	// The resend timer never runs out: only the fast path sends again,
	// however late a loaded machine runs the receipts.
	p := startPrimary(t, options{subsystems: []string{"ss1"}, interval: interval, retransmit: time.Minute})
	l := linkAskedWaited(t, p)
	set := func(within time.Duration) *recordset.RecordSet {
		t.Helper()
		rs, closed := l.nextSet(within)
		if closed {
			t.Fatalf("connection closed: %v", <-l.closed)
		}
		return rs
	}
	p.write(t, "ss1", bytes.Repeat([]byte{3}, 4096), 0)
	p.mover.Cut()
	var lost, after *recordset.RecordSet
	for after == nil {
		rs := set(deadline)
		if rs == nil {
			t.Fatal("the write was never sent")
		}
		switch {
		case lost == nil && len(rs.Updates) > 0:
			lost = rs
		case lost != nil:
			after = rs
		}
	}
	// The secondary read the set after it, then began to wait on its disk.
	stop := make(chan struct{})
	done := make(chan struct{})
	defer func() { close(stop); <-done }()
	go func() {
		defer close(done)
		began := time.Now()
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			p := transport.Position{Received: map[string]uint64{"ss1": lost.Seq - 1}, Ahead: map[string]uint64{"ss1": after.Seq},
				Waited: max(time.Since(began), time.Nanosecond)}
			if l.conn.Send(transport.EncodePosition(transport.TypeAck, p)) != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	for {
		rs := set(deadline)
		if rs == nil {
			t.Fatalf("record set %d, the secondary's gap, not sent again", lost.Seq)
		}
		if rs.Seq == lost.Seq {
			break
		}
	}
	// Twenty fast resend periods of the wait more.
	again := 0
	for end := time.Now().Add(20 * 4 * interval); time.Now().Before(end); {
		if rs := set(time.Until(end)); rs != nil && rs.Seq == lost.Seq {
			again++
		}
	}
	if again > 0 {
		t.Fatalf("record set %d, the gap of a secondary that said it waited on its disk, sent again %d times more after the first (resends %d)",
			lost.Seq, again, p.mover.Stats().Resends)
	}
}
