package mover

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// linkAskedWaited links p to a secondary that asks what the primary reads,
// checks it says it reads the waited section, and welcomes it again.
func linkAskedWaited(t *testing.T, p *primary) *link {
	t.Helper()
	l, _ := p.accept(t)
	l.welcome(transport.Position{Features: transport.FeatureAsksPrimary})
	typ, body := l.next()
	if typ != transport.TypeFeatures {
		t.Fatalf("first frame after a Welcome that asks: type %d, want Features", typ)
	}
	if reads, err := transport.DecodeFeatures(body); err != nil || reads&transport.PrimaryReadsWaited == 0 {
		t.Fatalf("Features %#x (err %v): the primary does not say it reads that the secondary waits", reads, err)
	}
	l.welcome(transport.Position{})
	waitFor(t, "the link up", func() bool { up, _ := p.mover.Link(); return up })
	return l
}

// sayWaiting has the secondary on l send, every period until stop is
// closed, a receipt that acknowledges nothing and says it waits on its
// disk since began; done is closed once it sends no more.
func sayWaiting(l *link, began time.Time, period time.Duration, stop <-chan struct{}) (done <-chan struct{}) {
	d := make(chan struct{})
	go func() {
		defer close(d)
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			if l.conn.Send(transport.EncodePosition(transport.TypeAck, transport.Position{Waited: max(time.Since(began), time.Nanosecond)})) != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	return d
}

// While the secondary says it waits on its disk (a journal fsync of
// seconds), it takes nothing, and what was sent since waits read ahead or
// in the link's buffers: the primary must not count it lost for want of
// progress and send it again every resend period of the wait, each a
// duplicate dropped. The wait over, the acknowledgement releases it all.
func TestNothingIsSentAgainWhileTheSecondarySaysItWaits(t *testing.T) {
	const retransmit = 100 * time.Millisecond
	// The resend timer is looked at each interval; an idle interval sends
	// an empty record set, which is not to be sent again either.
	p := startPrimary(t, options{subsystems: []string{"ss1"}, interval: 20 * time.Millisecond, retransmit: retransmit})
	l := linkAskedWaited(t, p)
	stop := make(chan struct{})
	done := sayWaiting(l, time.Now(), retransmit/4, stop)
	var once sync.Once
	waitOver := func() { once.Do(func() { close(stop); <-done }) }
	defer waitOver()
	waitFor(t, "the primary to hear the secondary waits", func() bool { return p.mover.Stats().SecondaryWaiting > 0 })

	sent := map[uint64]int{}
	var last *recordset.RecordSet
	take := func(f []byte) {
		t.Helper()
		typ, body, err := transport.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		if typ != transport.TypeRecordSet {
			t.Fatalf("frame of type %d, want a record set", typ)
		}
		rs, err := recordset.Decode(body, recordset.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		sent[rs.Seq]++
		last = rs
	}
	// Ten writes a resend period apart: each resend period without
	// progress would send every one of them sent before it again.
	const writes = 10
	for i := range writes {
		p.write(t, "ss1", bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i)*4096)
		p.mover.Cut()
		for want := uint64(i + 1); last == nil || last.Seq < want; {
			take(<-l.frames)
		}
		time.Sleep(retransmit)
	}
	// Three resend periods more: what is sent again meanwhile arrives.
	for end := time.After(3 * retransmit); ; {
		select {
		case f := <-l.frames:
			take(f)
			continue
		case <-end:
		}
		break
	}
	st := p.mover.Stats()
	var again []uint64
	for seq, n := range sent {
		if n > 1 {
			again = append(again, seq)
		}
	}
	if st.Resends != 0 || len(again) > 0 {
		t.Fatalf("while the secondary said it waited on its disk (%s so far), the primary sent record sets again %d times (%d of the %d sent more than once): "+
			"the secondary has them, or will read them once it takes more", st.SecondaryWaiting, st.Resends, len(again), len(sent))
	}
	if !st.Connected {
		t.Fatalf("the link went down while the secondary waited: %q", st.LastError)
	}
	waitOver()
	l.ack(transport.Position{Group: 1, Time: last.Horizon, Through: map[string]uint64{"ss1": last.Seq}, Received: map[string]uint64{"ss1": last.Seq}})
	waitFor(t, "every record set released once the wait is over", func() bool {
		st := p.mover.Stats()
		return st.HeldWithUpdates == 0 && st.SecondaryWaiting == 0
	})
}

// A secondary that says it waits on its disk for good keeps the primary
// from sending anything again, but not its link: once it has acknowledged
// nothing new for HeldSend, the link is given up, as one whose receipts
// say nothing of a wait (TestALinkWhoseSecondaryAnswersButAcknowledgesNothingIsGivenUp),
// so that the session sees it down.
func TestASecondaryWaitingForGoodIsGivenUp(t *testing.T) {
	const silence, heldSend = 300 * time.Millisecond, 1500 * time.Millisecond
	p := startPrimary(t, options{subsystems: []string{"ss1"}, interval: 20 * time.Millisecond, retransmit: 100 * time.Millisecond,
		silence: silence, heldSend: heldSend})
	l := linkAskedWaited(t, p)
	stop := make(chan struct{})
	done := sayWaiting(l, time.Now(), 50*time.Millisecond, stop)
	defer func() { close(stop); <-done }()
	go func() {
		for range l.frames {
		}
	}()
	waitFor(t, "the primary to hear the secondary waits", func() bool { return p.mover.Stats().SecondaryWaiting > 0 })
	written := time.Now()
	p.write(t, "ss1", bytes.Repeat([]byte{7}, 4096), 0)
	for p.mover.Stats().Connected {
		if time.Since(written) > 10*heldSend {
			st := p.mover.Stats()
			t.Fatalf("a secondary that says it waits on its disk and acknowledges nothing for %v (HeldSend %v) still counts as connected: "+
				"connects %d, record sets with updates %d, last error %q", time.Since(written).Round(time.Millisecond), heldSend,
				st.Connects, st.HeldWithUpdates, st.LastError)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if took := time.Since(written); took < heldSend {
		t.Fatalf("the link was given up %v after the write, before HeldSend %v", took, heldSend)
	}
	if st := p.mover.Stats(); !strings.Contains(st.LastError, "acknowledged") {
		t.Errorf("the link was given up with last error %q, want one that says nothing was acknowledged", st.LastError)
	}
}
