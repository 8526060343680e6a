package mover

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"duplex/transport"
)

// TestIdleLinkBehindADroppingPartitionIsGivenUp: an idle primary whose
// secondary takes bundles sends a heartbeat every interval and holds no
// record set outstanding. A partition that drops every packet, and resets
// nothing, leaves its connection open: the heartbeats go nowhere and no
// receipt comes back. The link must be given up once the secondary has
// acknowledged nothing for the silence time, and redialled, as with record
// sets outstanding; counted as connected, it would say the secondary
// follows while the other site may have been promoted. A link whose
// heartbeats are answered is kept however long it is idle.
func TestIdleLinkBehindADroppingPartitionIsGivenUp(t *testing.T) {
	const silence = 300 * time.Millisecond
	p := startPrimary(t, options{subsystems: []string{"ss1"}, interval: 20 * time.Millisecond, retransmit: 100 * time.Millisecond, silence: silence})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Features: transport.FeatureBundles})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })

	// The secondary answers every frame (heartbeats only: nothing is
	// written) with a receipt.
	var answered atomic.Int64
	go func() {
		for f := range l.frames {
			if typ, _, err := transport.Open(f); err != nil || typ != transport.TypeBundle {
				continue
			}
			if l.conn.Send(transport.EncodePosition(transport.TypeAck, transport.Position{})) != nil {
				return
			}
			answered.Add(1)
		}
	}()
	end := time.Now().Add(4 * silence)
	for time.Now().Before(end) {
		if st := p.mover.Stats(); !st.Connected || st.HeldWithUpdates != 0 {
			t.Fatalf("an idle link whose heartbeats are answered (%d so far) was given up (connected %v, record sets with updates %d, last error %q)",
				answered.Load(), st.Connected, st.HeldWithUpdates, st.LastError)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if answered.Load() == 0 {
		t.Fatal("no heartbeat reached the secondary in four silence times: the test proves nothing")
	}

	connects := p.mover.Stats().Connects
	p.net.SetFaults(transport.Faults{Drop: 1})
	cut := time.Now()
	limit := 10 * silence
	for p.mover.Stats().Connected {
		if time.Since(cut) > limit {
			st := p.mover.Stats()
			t.Fatalf("behind a partition that drops every packet the idle link still counts as connected %v later (silence time %v; heartbeats sent, none acknowledged): "+
				"bytes sent %d, connects %d", time.Since(cut).Round(time.Millisecond), silence, st.BytesSent, st.Connects)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Silence counts from the first frame left unanswered, which may have
	// gone out (its receipt dropped) up to an interval before the partition
	// was set: judge the give-up against the last receipt, not the cut.
	if heard := p.mover.Stats().LinkAckedAt; time.Since(heard) < silence {
		t.Fatalf("the link was given up %v after the last receipt, before the silence time %v", time.Since(heard), silence)
	}
	if st := p.mover.Stats(); st.LastError == "" {
		t.Error("the link was given up with no last error to say why")
	}
	// It redials: once the partition heals, a new connection is linked.
	p.net.SetFaults(transport.Faults{})
	l2, _ := p.accept(t)
	l2.welcome(transport.Position{Features: transport.FeatureBundles})
	waitFor(t, "the link again", func() bool { return p.mover.Stats().Connected })
	if got := p.mover.Stats().Connects; got <= connects {
		t.Fatalf("Connects %d after the partition healed, want more than %d", got, connects)
	}
}

// TestLinkAckedAtFollowsEveryReceipt: LinkAckedAt is when the secondary
// last acknowledged anything on the link: its Welcome, then each receipt,
// those of an idle primary's heartbeats included, which bring nothing new
// (LastAckedTime does not move for them). Behind a partition it stops, so
// that a reader (the command line's pair routing) learns that the
// secondary has not been heard of late before the silence time ends the
// link.
func TestLinkAckedAtFollowsEveryReceipt(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	if st := p.mover.Stats(); !st.LinkAckedAt.IsZero() {
		t.Fatalf("LinkAckedAt %v before any link, want zero", st.LinkAckedAt)
	}
	l, _ := p.accept(t)
	before := time.Now()
	l.welcome(transport.Position{Features: transport.FeatureBundles})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
	welcomed := p.mover.Stats().LinkAckedAt
	if welcomed.Before(before) {
		t.Fatalf("LinkAckedAt %v after the Welcome, want at or after %v", welcomed, before)
	}
	for i := range 3 {
		time.Sleep(20 * time.Millisecond)
		p.mover.Cut()
		if typ, _ := l.next(); typ != transport.TypeBundle {
			t.Fatalf("frame of type %d, want a bundle of heartbeats", typ)
		}
		prev := p.mover.Stats().LinkAckedAt
		sent := time.Now()
		l.ack(transport.Position{})
		waitFor(t, fmt.Sprintf("receipt %d taken", i+1), func() bool { return p.mover.Stats().LinkAckedAt.After(prev) })
		if st := p.mover.Stats(); st.LinkAckedAt.Before(sent) {
			t.Fatalf("LinkAckedAt %v, before the receipt was sent at %v", st.LinkAckedAt, sent)
		}
	}
	if st := p.mover.Stats(); !st.LastAckedTime.IsZero() {
		t.Fatalf("LastAckedTime %v: receipts of heartbeats that bring nothing new moved it", st.LastAckedTime)
	}
	// Unanswered, it stays.
	heard := p.mover.Stats().LinkAckedAt
	p.mover.Cut()
	l.next()
	time.Sleep(50 * time.Millisecond)
	if st := p.mover.Stats(); !st.LinkAckedAt.Equal(heard) {
		t.Fatalf("LinkAckedAt moved from %v to %v with nothing acknowledged", heard, st.LinkAckedAt)
	}
}
