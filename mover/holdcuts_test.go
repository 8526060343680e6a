package mover

import (
	"bytes"
	"testing"
	"time"

	"duplex/transport"
)

// TestHeldCutsFormNothingUntilReleased: while cuts are held (the pair
// manager holds them from a Drop until it has captured again the
// markers the Drop took), a cut forms no record set, not even one
// without updates that would tell the secondary a later time; once
// released, the next cut forms what was captured meanwhile, and a
// second release does nothing.
func TestHeldCutsFormNothingUntilReleased(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	release := p.mover.HoldCuts()
	p.mover.Cut()
	if rs := l.recordSetWithin(100 * time.Millisecond); rs != nil {
		t.Fatalf("a cut while held formed record set %d (%d updates, horizon %d)", rs.Seq, len(rs.Updates), rs.Horizon)
	}
	data := bytes.Repeat([]byte{0x5a}, 4096)
	p.write(t, "ss1", data, 0)
	if p.mover.tryCut() {
		t.Fatal("a Quiesce's cut while held reports it cut")
	}
	if rs := l.recordSetWithin(100 * time.Millisecond); rs != nil {
		t.Fatalf("a cut while held formed record set %d (%d updates)", rs.Seq, len(rs.Updates))
	}
	release()
	release()
	p.mover.Cut()
	rs := l.recordSet()
	if len(rs.Updates) != 1 || !bytes.Equal(rs.Updates[0].Data, data) {
		t.Fatalf("the cut once released formed record set %d of %d updates, want the write captured while held", rs.Seq, len(rs.Updates))
	}
	if p.mover.held() {
		t.Fatal("cuts still held after a release called twice")
	}
}

// TestHeldCutsStayHeldUntilEveryHoldIsReleased: holds are counted, not
// a flag. A second session drop while the markers the first announces
// again still wait (for the timer's lease) takes a hold of its own; the
// first hold's release must not let a cut form a group before the
// second drop's markers are captured.
func TestHeldCutsStayHeldUntilEveryHoldIsReleased(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	first := p.mover.HoldCuts()
	second := p.mover.HoldCuts()
	first()
	first()
	p.mover.Cut()
	if rs := l.recordSetWithin(100 * time.Millisecond); rs != nil {
		t.Fatalf("a cut with one hold of two released formed record set %d", rs.Seq)
	}
	second()
	p.mover.Cut()
	if rs := l.recordSetWithin(5 * time.Second); rs == nil {
		t.Fatal("no record set formed once every hold was released")
	}
}
