package site

import (
	"encoding/json"
	"strings"
	"testing"

	"duplex/control"
)

// TestARefusedPrimaryWhosePairsAreAllSuspendedSaysItIsRefused: a primary
// the secondary refuses until an operator acts (a new pair state, which it
// has no record of) has every pair suspended, as the session does itself
// once the sidefile fills while refused. No pair's note says the refusal
// then (a suspended pair's note is its own), yet the primary is refused
// all the same and each resume meets it: its status says so in refused,
// which duplex status reads for its REFUSED line. Before, nothing but
// last_error told of it, and duplex status printed no REFUSED line, where
// a passing refusal's shows whatever the pairs' states.
func TestARefusedPrimaryWhosePairsAreAllSuspendedSaysItIsRefused(t *testing.T) {
	p := refusedFreshPrimary(t)
	// Read as duplex status reads it, from the JSON: that JSON if it does
	// not say the primary is refused, the refusal lasting; "" if it does.
	notRefused := func(st control.Status) string {
		t.Helper()
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"refused":true`) || strings.Contains(string(b), `"refusal_passes"`) {
			return string(b)
		}
		return ""
	}
	if b := notRefused(p.Status()); b != "" {
		t.Errorf("the status of a primary refused until an operator acts, its pairs pending, does not say it is refused, "+
			"nor that the refusal lasts:\n%s", b)
	}
	if _, err := p.Pairs().SuspendAll(); err != nil {
		t.Fatal(err)
	}
	st := p.Status()
	for _, v := range st.Volumes {
		if v.State != "suspended" || strings.HasPrefix(v.Note, control.RefusedNote) {
			t.Fatalf("volume %s after the suspension of every pair: %s, note %q; want it suspended, its note not the refusal", v.Name, v.State, v.Note)
		}
	}
	if b := notRefused(st); b != "" {
		t.Errorf("the status of a primary refused until an operator acts, every pair suspended, does not say it is refused, "+
			"nor that the refusal lasts:\n%s", b)
	}
}
