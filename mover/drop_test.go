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

// nextSet returns the next record set on l, or closed if the mover closed
// the connection; it fails the test if neither happens within d.
func (l *link) nextSet(d time.Duration) (rs *recordset.RecordSet, closed bool) {
	l.t.Helper()
	for {
		select {
		case f, ok := <-l.frames:
			if !ok {
				return nil, true
			}
			typ, body, err := transport.Open(f)
			if err != nil {
				l.t.Fatalf("Open: %v", err)
			}
			if typ != transport.TypeRecordSet {
				continue
			}
			rs, err := recordset.Decode(body, recordset.DefaultLimits)
			if err != nil {
				l.t.Fatal(err)
			}
			return rs, false
		case <-time.After(d):
			return nil, false
		}
	}
}

func carries(rs *recordset.RecordSet, data string) bool {
	for _, u := range rs.Updates {
		if bytes.Equal(u.Data, []byte(data)) {
			return true
		}
	}
	return false
}

// expectDelivered plays a secondary that holds record sets of subsystem ss1
// through held for the mover's instance old (received or journaled), and
// journaled through journaled: the write made after the Drop must reach it
// in a record set it accepts, on this connection (numbered after held) or on
// a new one under a new instance (numbered after journaled).
func expectDelivered(t *testing.T, p *primary, l *link, old, held, journaled uint64, data string) {
	t.Helper()
	for {
		rs, closed := l.nextSet(3 * time.Second)
		if closed {
			break
		}
		if rs == nil {
			t.Fatalf("the write after Drop never reached the secondary (sidefile Used %d, mover %+v)", p.used("ss1"), p.mover.Stats())
		}
		if carries(rs, data) {
			if rs.Seq <= held {
				t.Fatalf("the write after Drop went as record set %d of the instance before the Drop, "+
					"which the secondary, holding %d of it, discards as a duplicate", rs.Seq, held)
			}
			return
		}
	}
	l2, h := p.accept(t)
	if h.Instance == old {
		t.Fatal("reconnected under the instance of before the Drop: the secondary keeps what it holds of it")
	}
	through := map[string]uint64{"ss1": journaled}
	l2.welcome(transport.Position{Group: 1, Through: through})
	for {
		rs, _ := l2.nextSet(3 * time.Second)
		if rs == nil {
			t.Fatalf("the write after Drop never reached the secondary (sidefile Used %d, mover %+v)", p.used("ss1"), p.mover.Stats())
		}
		if carries(rs, data) {
			if rs.Seq <= journaled {
				t.Fatalf("the write after Drop went as record set %d, at or below the journaled %d", rs.Seq, journaled)
			}
			return
		}
	}
}

// dropAndWrite is what auto-suspend does and what a client does next.
func dropAndWrite(t *testing.T, p *primary, data string) {
	p.mover.Drop(func(recordset.Update) {})
	if err := p.subs["ss1"].Write(t.Context(), volName("ss1"), []byte(data), 4096); err != nil {
		t.Error(err)
	}
	p.mover.Cut()
}

// reconnectHolding connects once, has record set 1 received (not
// journaled), and cuts the link; it returns the reconnection of the same
// instance, its Hello read.
func reconnectHolding(t *testing.T, p *primary) (*link, uint64) {
	l, h := p.accept(t)
	l.welcome(transport.Position{})
	p.write(t, "ss1", []byte("before drop"), 0)
	p.mover.Cut()
	if rs := l.recordSet(); rs.Seq != 1 {
		t.Fatalf("first record set %d", rs.Seq)
	}
	l.conn.Close()
	l2, h2 := p.accept(t)
	if h2.Instance != h.Instance {
		t.Fatal("a reconnect changed the instance")
	}
	return l2, h.Instance
}

// startDroppingAt starts a primary that, once arm is called, drops what
// it holds and writes "after drop" the first time it passes point.
func startDroppingAt(t *testing.T, point string) (p *primary, arm func()) {
	t.Helper()
	var once sync.Once
	armed := make(chan struct{})
	p = startPrimary(t, options{subsystems: []string{"ss1"}, hook: func(at string) {
		if at != point {
			return
		}
		select {
		case <-armed:
			once.Do(func() { dropAndWrite(t, p, "after drop") })
		default:
		}
	}})
	return p, func() { close(armed) }
}

// Drop between the Hello and the Welcome: the Welcome answers the instance
// of before the Drop, whose record sets the secondary still holds.
func TestDropBetweenHelloAndWelcome(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l2, old := reconnectHolding(t, p)
	dropAndWrite(t, p, "after drop")
	l2.welcome(transport.Position{Received: map[string]uint64{"ss1": 1}})
	expectDelivered(t, p, l2, old, 1, 0, "after drop")
}

// Drop between the Welcome being applied and the connection being installed.
func TestDropWhileWelcomeIsApplied(t *testing.T) {
	p, arm := startDroppingAt(t, "welcomed")
	l2, old := reconnectHolding(t, p)
	arm()
	l2.welcome(transport.Position{Received: map[string]uint64{"ss1": 1}})
	expectDelivered(t, p, l2, old, 1, 0, "after drop")
}

// Drop while an acknowledgement from the secondary is being taken: it speaks
// of record sets of the instance before the Drop, not of those formed after.
func TestDropWhileAckInFlight(t *testing.T) {
	p, arm := startDroppingAt(t, "frame")
	l, h := p.accept(t)
	l.welcome(transport.Position{})
	p.write(t, "ss1", []byte("before drop"), 0)
	p.mover.Cut()
	if rs := l.recordSet(); rs.Seq != 1 {
		t.Fatalf("first record set %d", rs.Seq)
	}
	arm()
	// The secondary journaled set 1; its ack is taken as the Drop happens.
	through := map[string]uint64{"ss1": 1}
	l.ack(transport.Position{Group: 1, Through: through, Received: through})
	expectDelivered(t, p, l, h.Instance, 1, 1, "after drop")
}

// TestALinkEndedByADropSaysSo: a Drop closes the current connection, whose
// session then ends; it ends because of the Drop (ErrDropped), which the
// link's last error and log say, not as a link lost.
func TestALinkEndedByADropSaysSo(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	waitFor(t, "the link to be up", func() bool { return p.mover.Stats().Connected })
	p.mover.Drop(func(recordset.Update) {})
	p.accept(t) // the redial, once the session ended
	if got := p.mover.Stats().LastError; !strings.Contains(got, ErrDropped.Error()) {
		t.Fatalf("the session a Drop ended says %q, want %q", got, ErrDropped)
	}
}
