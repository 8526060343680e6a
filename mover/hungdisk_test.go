package mover

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"duplex/transport"
)

// TestALinkWhoseSecondaryAnswersButAcknowledgesNothingIsGivenUp: a
// secondary whose disk hangs for good goes on sending receipts while it
// waits, each saying nothing new. With what is outstanding small enough to
// fit in the sockets' buffers no send is held, so HeldSend's bound on a
// held send never applies, and the receipts keep the silence time from
// running out: the link would count as up for ever, which the session's
// suspension never sees as down, and once the sidefile is full the
// application's writes would wait for ever. The link must be given up once
// nothing new has been acknowledged for HeldSend since the oldest record
// set awaiting it went out; an idle link whose heartbeats are answered
// holds nothing awaiting acknowledgement and is kept (see
// TestIdleLinkBehindADroppingPartitionIsGivenUp).
func TestALinkWhoseSecondaryAnswersButAcknowledgesNothingIsGivenUp(t *testing.T) {
	const silence, heldSend = 300 * time.Millisecond, 1500 * time.Millisecond
	p := startPrimary(t, options{subsystems: []string{"ss1"}, interval: 20 * time.Millisecond, retransmit: 100 * time.Millisecond,
		silence: silence, heldSend: heldSend})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Features: transport.FeatureBundles})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })

	// The secondary answers every frame, record sets and heartbeats, with
	// a receipt that acknowledges nothing.
	go func() {
		for range l.frames {
			if l.conn.Send(transport.EncodePosition(transport.TypeAck, transport.Position{})) != nil {
				return
			}
		}
	}()
	written := time.Now()
	p.write(t, "ss1", bytes.Repeat([]byte{7}, 4096), 0)
	limit := 10 * heldSend
	for p.mover.Stats().Connected {
		if time.Since(written) > limit {
			st := p.mover.Stats()
			t.Fatalf("a secondary that answers every frame but acknowledges nothing for %v (HeldSend %v) still counts as connected: "+
				"connects %d, record sets with updates %d, last error %q", time.Since(written).Round(time.Millisecond), heldSend,
				st.Connects, st.HeldWithUpdates, st.LastError)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The record set went out after the write began: HeldSend counts from
	// then at the earliest.
	if took := time.Since(written); took < heldSend {
		t.Fatalf("the link was given up %v after the write, before HeldSend %v", took, heldSend)
	}
	if st := p.mover.Stats(); !strings.Contains(st.LastError, "acknowledged") {
		t.Errorf("the link was given up with last error %q, want one that says nothing was acknowledged", st.LastError)
	}
}
