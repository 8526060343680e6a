package secondary

import (
	"testing"

	"duplex/transport"
)

// TestAPendingProcessWhoseGroupIsJournaledResendsAfterAnotherLinked:
// process 7's first group is journaled but the identity write naming it
// fails, leaving it pending from that group, a group the journal holds.
// Process 8 links and sends nothing; process 7 links again and resends the
// record set its group holds part of. The journal ends with 7's group, so
// 7 is the process that may resend it: a Welcome deciding from the
// identity's named process alone, not settled against the journal, took
// 7 for a process that never sent it and refused the resend as stale.
func TestAPendingProcessWhoseGroupIsJournaledResendsAfterAnotherLinked(t *testing.T) {
	r := newIdentityRig(t)
	leaveProcess7Pending(t, r)
	r.in.Clear()

	h := r.hello()
	h.Instance = 8
	if _, typ, body := r.dial(h); typ != transport.TypeWelcome {
		reason, _ := refusalReason(body)
		t.Fatalf("process 8 refused (%q): frame type %d, want a welcome", reason, typ)
	}
	if reason, acked := resendPartlyJournaled(t, r.rig); reason != "" || acked != 2 {
		t.Fatalf("process 7 formed journaled group 1 and resent the record set it holds part of: refusal %q, acknowledged through group %d, want group 2 (identity %s)",
			reason, acked, r.identityFile())
	}
}
