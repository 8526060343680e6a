package mover

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"duplex/transport"
)

// The buffers of a journaled record set go back to the subsystem for later
// writes, but the secondary can acknowledge a record set while the mover
// encodes it again: a resend after a reconnect whose Welcome came before the
// secondary journaled what the first connection carried (or a
// retransmission). A later write that reused a buffer meanwhile would go
// out as the data of the earlier write, with a valid checksum.
func TestBufferOfARecordSetAcknowledgedWhileItIsResentIsNotReusedMeanwhile(t *testing.T) {
	var armed atomic.Bool
	var p *primary
	var l2 *link
	hookErr := make(chan error, 1)
	hook := func(point string) {
		if point != "encode" || !armed.CompareAndSwap(true, false) {
			return
		}
		// The resend of record set 1 is about to be encoded: the
		// secondary journals it now, and the primary takes a new write.
		hookErr <- func() error {
			if err := l2.conn.Send(transport.EncodePosition(transport.TypeAck, transport.Position{Group: 1, Time: 1, Through: map[string]uint64{"ss1": 1}})); err != nil {
				return err
			}
			end := time.Now().Add(deadline)
			for p.used("ss1") != 0 {
				if time.Now().After(end) {
					t.Error("the acknowledgement never released record set 1")
					break
				}
				time.Sleep(time.Millisecond)
			}
			return p.subs["ss1"].Write(context.Background(), volName("ss1"), bytes.Repeat([]byte{'B'}, 4096), 8192)
		}()
	}
	p = startPrimary(t, options{subsystems: []string{"ss1"}, hook: hook})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	a := bytes.Repeat([]byte{'A'}, 4096)
	p.write(t, "ss1", a, 0)
	p.mover.Cut()
	if rs := l.recordSet(); rs.Seq != 1 || len(rs.Updates) != 1 || !bytes.Equal(rs.Updates[0].Data, a) {
		t.Fatalf("first send: record set %d with %d updates", rs.Seq, len(rs.Updates))
	}
	// The link breaks before the secondary journaled record set 1; the
	// mover redials and is welcomed with nothing journaled.
	l.conn.Close()
	l2, _ = p.accept(t)
	armed.Store(true)
	l2.welcome(transport.Position{})
	rs := l2.recordSet()
	if err := <-hookErr; err != nil {
		t.Fatal(err)
	}
	if rs.Seq != 1 || len(rs.Updates) != 1 {
		t.Fatalf("resend: record set %d with %d updates, want record set 1 with the write", rs.Seq, len(rs.Updates))
	}
	if got := rs.Updates[0].Data; !bytes.Equal(got, a) {
		t.Fatalf("the resent record set carries %q... for the write of %q...: its buffer was reused by a later write while it was encoded", got[:8], a[:8])
	}
}
