package mover

import (
	"errors"
	"testing"

	"duplex/transport"
)

// TestTheRefusalsKindIsTheFramesFlag: whether the last refusal passes
// is what the secondary's Refuse frame said, whatever its words; a frame
// without the flag (a secondary from before it) is lasting, and so is one
// that does not decode.
func TestTheRefusalsKindIsTheFramesFlag(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	for i, tc := range []struct {
		name    string
		frame   []byte
		passing bool
	}{
		{"passing", transport.EncodeRefuse(transport.Refusal{Reason: "back in a second", Passing: true}), true},
		{"lasting, in the words of a passing one", transport.EncodeRefuse(transport.Refusal{Reason: "secondary stopped at group 3: EIO; the secondary retries by itself"}), false},
		{"passing, in other words", transport.EncodeRefuse(transport.Refusal{Reason: "another session's", Passing: true}), true},
		{"a section this build does not know", transport.Frame(transport.TypeRefuse, []byte{0, 1, 'r', 9}), false},
	} {
		l, _ := p.accept(t)
		if err := l.conn.Send(tc.frame); err != nil {
			t.Fatal(err)
		}
		l.awaitClosed()
		waitFor(t, "the refusal counted", func() bool { return p.mover.Stats().Refusals == uint64(i+1) })
		if st := p.mover.Stats(); st.LastRefusalPasses != tc.passing || !st.FailedDialRefused {
			t.Errorf("%s: LastRefusalPasses %v, FailedDialRefused %v (%q); want %v, true", tc.name, st.LastRefusalPasses, st.FailedDialRefused, st.LastRefusal, tc.passing)
		}
	}
}

// TestRefusedIsErrRefused: the error of a Refuse frame is an ErrRefused
// that says the reason as ever, and keeps what the frame said.
func TestRefusedIsErrRefused(t *testing.T) {
	_, body, err := transport.Open(transport.EncodeRefuse(transport.Refusal{Reason: "no", Passing: true}))
	if err != nil {
		t.Fatal(err)
	}
	var e error = Refused(body)
	var re *RefusedError
	if !errors.Is(e, ErrRefused) || !errors.As(e, &re) || !re.Passing || e.Error() != "secondary refused the session: no" {
		t.Fatalf("Refused = %v (%+v): want an ErrRefused, passing, saying the reason", e, re)
	}
}
