package mover

import (
	"bytes"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// The last record set of a burst lost on the way while the secondary waits
// on its disk has no later one to show the secondary a gap: only the
// resend timer sends it again. Held while the secondary says it waits, the
// timer must run again once a receipt says the wait is over, and send it
// no sooner than a resend period after that receipt.
func TestTheLastRecordSetLostWhileTheSecondaryWaitsIsSentAgainOnceTheWaitEnds(t *testing.T) {
	const retransmit = 100 * time.Millisecond
	p := startPrimary(t, options{subsystems: []string{"ss1"}, interval: 20 * time.Millisecond, retransmit: retransmit})
	l := linkAskedWaited(t, p)
	stop := make(chan struct{})
	done := sayWaiting(l, time.Now(), retransmit/4, stop)
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			<-done
		}
	}()
	waitFor(t, "the primary to hear the secondary waits", func() bool { return p.mover.Stats().SecondaryWaiting > 0 })

	// set returns the next record set the primary sends, or nil once
	// within passes with none.
	set := func(within time.Duration) *recordset.RecordSet {
		t.Helper()
		rs, closed := l.nextSet(within)
		if closed {
			t.Fatalf("connection closed: %v", <-l.closed)
		}
		return rs
	}
	p.write(t, "ss1", bytes.Repeat([]byte{9}, 4096), 0)
	p.mover.Cut()
	var lost *recordset.RecordSet
	for lost == nil {
		rs := set(deadline)
		if rs == nil {
			t.Fatal("the write was never sent")
		}
		if len(rs.Updates) > 0 {
			lost = rs
		}
	}
	// The secondary never saw it, nor the empty ones after it: it waits
	// on its disk for five resend periods.
	for end := time.Now().Add(5 * retransmit); time.Now().Before(end); {
		if rs := set(time.Until(end)); rs != nil && rs.Seq <= lost.Seq {
			t.Fatalf("record set %d sent again while the secondary said it waited", rs.Seq)
		}
	}
	close(stop)
	<-done
	stopped = true
	// The wait is over, and nothing of it acknowledged: the receipt that
	// says so is all the primary hears.
	over := time.Now()
	l.ack(transport.Position{})
	for {
		rs := set(deadline)
		if rs == nil {
			st := p.mover.Stats()
			t.Fatalf("record set %d, lost while the secondary waited, not sent again %v after the wait ended (resends %d, secondary waiting %v, connected %v)",
				lost.Seq, time.Since(over).Round(time.Millisecond), st.Resends, st.SecondaryWaiting, st.Connected)
		}
		if rs.Seq == lost.Seq {
			if took := time.Since(over); took < retransmit {
				t.Fatalf("record set %d sent again %v after the wait ended, before the resend period %v", lost.Seq, took, retransmit)
			}
			break
		}
	}
}

// The wait is the word of one connection's secondary: the next connection,
// to a secondary that says nothing of a wait (one of before), inherits
// none of it, and what it loses the resend timer sends again.
func TestAWaitEndsWithItsConnection(t *testing.T) {
	const retransmit = 100 * time.Millisecond
	p := startPrimary(t, options{subsystems: []string{"ss1"}, interval: 20 * time.Millisecond, retransmit: retransmit})
	l := linkAskedWaited(t, p)
	stop := make(chan struct{})
	done := sayWaiting(l, time.Now(), retransmit/4, stop)
	waitFor(t, "the primary to hear the secondary waits", func() bool { return p.mover.Stats().SecondaryWaiting > 0 })
	l.conn.Close()
	close(stop)
	<-done

	l2, _ := p.accept(t)
	l2.welcome(transport.Position{})
	waitFor(t, "the link up again", func() bool { st := p.mover.Stats(); return st.Connected && st.Connects == 2 })
	if w := p.mover.Stats().SecondaryWaiting; w != 0 {
		t.Fatalf("a new connection whose secondary said nothing of a wait: SecondaryWaiting %v, the last connection's", w)
	}
	p.write(t, "ss1", bytes.Repeat([]byte{5}, 4096), 0)
	p.mover.Cut()
	var lost uint64
	for sent := 0; ; {
		rs := l2.recordSet()
		if len(rs.Updates) == 0 {
			continue
		}
		if lost == 0 {
			lost = rs.Seq
		}
		if rs.Seq == lost {
			if sent++; sent == 2 {
				break
			}
		}
	}
}
