package mover

import (
	"testing"

	"duplex/transport"
)

// TestFailedDialForgottenOnceLinked: FailedDialBegan and FailedDialRefused
// speak of the dials since the link was last up. A link made and welcomed
// since says the secondary is reachable and takes this primary: the flags
// of a dial before it, kept, would have a stop that begins after a later
// loss of that link give up at once on a secondary that refused long ago
// (or was out of reach), not wait for a dial of its own to fail.
func TestFailedDialForgottenOnceLinked(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})

	// A dial the secondary refuses.
	l, _ := p.accept(t)
	if err := l.conn.Send(transport.EncodeRefuse(transport.Refusal{Reason: "not this primary"})); err != nil {
		t.Fatal(err)
	}
	l.awaitClosed()
	waitFor(t, "the refusal counted", func() bool { return p.mover.Stats().Refusals == 1 })
	if st := p.mover.Stats(); !st.FailedDialRefused || st.FailedDialBegan.IsZero() {
		t.Fatalf("after a refused dial: FailedDialRefused %v, FailedDialBegan %v; want true, set", st.FailedDialRefused, st.FailedDialBegan)
	}
	l, _ = p.accept(t)
	l.welcome(transport.Position{})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
	if st := p.mover.Stats(); st.FailedDialRefused || !st.FailedDialBegan.IsZero() {
		t.Fatalf("linked and welcomed after a refused dial: FailedDialRefused %v, FailedDialBegan %v; want false, zero", st.FailedDialRefused, st.FailedDialBegan)
	}

	// A dial that finds no secondary.
	p.net.SetDown(true)
	waitFor(t, "a failed dial", func() bool { return !p.mover.Stats().FailedDialBegan.IsZero() })
	if st := p.mover.Stats(); st.FailedDialRefused {
		t.Fatal("a dial that found no secondary counted as refused")
	}
	p.net.SetDown(false)
	l, _ = p.accept(t)
	l.welcome(transport.Position{})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
	if st := p.mover.Stats(); st.FailedDialRefused || !st.FailedDialBegan.IsZero() {
		t.Fatalf("linked and welcomed after a failed dial: FailedDialRefused %v, FailedDialBegan %v; want false, zero", st.FailedDialRefused, st.FailedDialBegan)
	}
}
