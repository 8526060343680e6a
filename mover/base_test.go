package mover

import (
	"testing"

	"duplex/transport"
)

// TestBaseIsTheFirstWelcome: Stats.Base is what the secondary held at the
// process's first contact, the bound on what it holds of earlier runs; later
// Welcomes and acknowledgements speak of this run and leave it.
func TestBaseIsTheFirstWelcome(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	if st := p.mover.Stats(); st.Based {
		t.Fatalf("Based before any Welcome: %+v", st.Base)
	}
	l, _ := p.accept(t)
	l.welcome(transport.Position{Group: 3, Time: 7, Through: map[string]uint64{"ss1": 0}})
	waitFor(t, "the first Welcome", func() bool { return p.mover.Stats().Based })
	l.ack(transport.Position{Group: 4, Time: 9, Through: map[string]uint64{"ss1": 0}})
	waitFor(t, "the acknowledgement", func() bool { return p.mover.Stats().Acked.Time == 9 })
	l.conn.Close()
	l2, _ := p.accept(t)
	l2.welcome(transport.Position{Group: 5, Time: 11, Through: map[string]uint64{"ss1": 0}})
	waitFor(t, "the second Welcome", func() bool { return p.mover.Stats().Acked.Time == 11 })
	if st := p.mover.Stats(); st.Base.Time != 7 || st.Base.Group != 3 {
		t.Fatalf("Base = %+v after a reconnect, want the first Welcome's group 3 at 7", st.Base)
	}
}
