package secondary

import (
	"path/filepath"
	"strings"
	"testing"

	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// TestAPendingProcessReplacedIsSettledFirst: process 7's first group is
// journaled but the identity write naming it fails, leaving it pending
// from that group. A new process, 8, links, and its first group is named
// pending in its place; the journal write of that group fails, and the
// secondary crashes. The journal ends with process 7's group, so the
// identity must name 7 once opened again: settling the pending process
// against the journal only at Open would find 8 pending from a group never
// journaled, and 7 forgotten, refused as stale for ever when it resends
// the record set its group holds part of.
func TestAPendingProcessReplacedIsSettledFirst(t *testing.T) {
	r := newIdentityRig(t)
	leaveProcess7Pending(t, r)

	h := r.hello()
	h.Instance = 8
	conn8, typ, body := r.dial(h)
	if typ != transport.TypeWelcome {
		reason, _ := refusalReason(body)
		t.Fatalf("process 8 refused (%q): frame type %d, want a welcome", reason, typ)
	}
	welcome, err := transport.DecodePosition(body)
	if err != nil {
		t.Fatal(err)
	}
	r.in.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(r.dir, "journal"), Err: disk.EIO, Once: true})
	sendRecordSet(t, conn8, subsystemSet("ss1", welcome.Through["ss1"]+1, 5_000, 6_000,
		recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 8192, Length: 4096, Timestamp: 5_000}))
	sendRecordSet(t, conn8, subsystemSet("ss2", welcome.Through["ss2"]+1, 0, 7_000))
	// A receipt sent while the journal write is tried may say group 1,
	// journaled before process 8 linked; its own group must not be.
	if reason, acked := answers(t, conn8, 1); acked > 1 || r.in.Injected(disk.OpWrite) == 0 {
		t.Fatalf("process 8's group: acknowledged through %d (refusal %q), %d journal writes failed; want nothing past group 1 acknowledged, the write failed",
			acked, reason, r.in.Injected(disk.OpWrite))
	}
	t.Logf("identity at the crash: %s", r.identityFile())

	r.crash()
	r.in.Clear()
	r.open()
	if id := r.identityFile(); !strings.Contains(id, `"journaled_instance": "7"`) || strings.Contains(id, "pending") {
		t.Errorf("opened again, the identity is %s; want it to name process 7, whose group the journal ends with, nothing pending", id)
	}
	if reason, acked := resendPartlyJournaled(t, r.rig); reason != "" || acked != 2 {
		t.Fatalf("process 7 formed journaled group 1 and resent the record set it holds part of: refusal %q, acknowledged through group %d, want group 2",
			reason, acked)
	}
}

// leaveProcess7Pending links process 7 and has its first group (1)
// journaled while the identity write naming it fails, so that the identity
// leaves 7 pending from a group the journal holds; 7's link stays open.
func leaveProcess7Pending(t *testing.T, r *identityRig) {
	t.Helper()
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
}
