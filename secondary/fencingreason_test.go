package secondary

import (
	"strings"
	"testing"

	"duplex/transport"
)

// TestPrimaryRefusedDuringAFenceIsNotToldItFailed: while a fence waits for
// the volumes (minutes after a backlog), a primary that reconnects is
// refused, and its operator sees only the refusal's reason. The fence has not
// failed: its identity is simply not written yet. Telling the primary that
// it could not be written, and that a restarted secondary would take it
// again, is a claim that does not hold.
func TestPrimaryRefusedDuringAFenceIsNotToldItFailed(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	open := r.journaledNotApplied(t)
	fenceDone := r.fenceUnderWay(t)
	_, typ, body := r.dial(r.hello())
	if typ != transport.TypeRefuse {
		t.Fatalf("a primary reconnecting while the fence waits: frame type %d, want a refusal", typ)
	}
	reason, err := refusalReason(body)
	if err != nil {
		t.Fatal(err)
	}
	open()
	if err := <-fenceDone; err != nil {
		t.Fatalf("fence: %v", err)
	}
	if strings.Contains(reason, "could not be written") || strings.Contains(reason, "would take this primary again") {
		t.Fatalf("refused while the fence waits for the volumes (it then succeeded) with: %q", reason)
	}
}
