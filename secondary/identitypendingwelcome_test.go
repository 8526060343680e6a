package secondary

import (
	"strings"
	"testing"

	"duplex/disk"
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
	conn, typ, _ := r.dial(r.hello()) // process 7
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	// Skip 1: past the rename of the write naming 7 pending.
	r.in.Inject(disk.Fault{Op: disk.OpRename, Under: r.site, Skip: 1, Err: disk.EIO, Once: true})
	first, second := partlyJournaledUpdates()
	sendRecordSet(t, conn, subsystemSet("ss1", 1, 1_000, 4_000, first, second))
	sendRecordSet(t, conn, subsystemSet("ss2", 1, 0, 2_000)) // group 1 ends at 2000, between the two
	if reason, acked := answers(t, conn, 0); acked != 1 || r.in.Injected(disk.OpRename) == 0 {
		t.Fatalf("acknowledged through group %d (refusal %q), %d renames failed; want group 1 with the identity naming 7 failed",
			acked, reason, r.in.Injected(disk.OpRename))
	}
	if id := r.identityFile(); !strings.Contains(id, `"pending_instance": "7"`) {
		t.Fatalf("identity after the failed write naming 7: %s, want 7 pending", id)
	}
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
