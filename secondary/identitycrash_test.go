package secondary

import (
	"path/filepath"
	"testing"

	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// TestResentAfterCrashBeforeIdentityNamesTheJournalingProcess: commit
// journals and syncs the first group of a new primary process and only then
// writes the identity naming it. A crash between the two leaves a journal
// whose last group that process formed and an identity naming none. The same
// process reconnects and resends the record set its journaled group holds
// part of, as the method requires; refusing it as stale refuses every resend
// of it, so the pair never replicates again without an operator.
func TestResentAfterCrashBeforeIdentityNamesTheJournalingProcess(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20}, "ss1", "ss2")
	journalPartOfARecordSet(t, r)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// The crash window: group 1 journaled and synced, the identity not yet
	// rewritten to name process 7: it still names the process before
	// (none), with process 7 pending from group 1.
	setCrashIdentity(t, r, 0, 7, 1)
	r.open()

	if reason, acked := resendPartlyJournaled(t, r); reason != "" || acked != 2 {
		t.Fatalf("process 7 formed journaled group 1 and resent the record set it holds part of, after a crash before the identity named it: "+
			"refusal %q, acknowledged through group %d, want group 2 (every resend is refused the same way: stuck)", reason, acked)
	}
}

// setCrashIdentity writes the identity commit leaves when a crash comes
// between its writes: naming instance, with pending to be named from group on.
func setCrashIdentity(t *testing.T, r *rig, instance, pending, group uint64) {
	t.Helper()
	path := IdentityPath(filepath.Join(r.dir, "state.json"))
	id, err := readIdentity(disk.Or(nil), path, WayForward)
	if err != nil {
		t.Fatal(err)
	}
	id.Instance, id.PendingInstance, id.PendingGroup = instance, pending, group
	if err := writeIdentity(disk.Or(nil), path, id); err != nil {
		t.Fatal(err)
	}
}

// TestResentAfterCrashBeforeThePendingGroupIsJournaled: a crash after the
// identity names a new process as pending, before its group reaches the
// journal, leaves the journal ending with the former process's group: that
// process, not the pending one, may resend the record set the group holds
// part of.
func TestResentAfterCrashBeforeThePendingGroupIsJournaled(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20}, "ss1", "ss2")
	journalPartOfARecordSet(t, r)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// Process 8 pending from group 2, which never reached the journal.
	setCrashIdentity(t, r, 7, 8, 2)
	r.open()

	if reason, acked := resendPartlyJournaled(t, r); reason != "" || acked != 2 {
		t.Fatalf("process 7 formed journaled group 1 and resent the record set it holds part of, after a crash before a pending "+
			"process's group was journaled: refusal %q, acknowledged through group %d, want group 2", reason, acked)
	}
}

// journalPartOfARecordSet has process 7 send ss1's record set of two
// updates, stamped 1000 and 3000, and ss2's horizon of 2000 between them:
// the secondary journals group 1, which holds only the first update.
func journalPartOfARecordSet(t *testing.T, r *rig) {
	t.Helper()
	conn, typ, _ := r.dial(r.hello()) // process 7
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	first, second := partlyJournaledUpdates()
	sendRecordSet(t, conn, subsystemSet("ss1", 1, 1_000, 4_000, first, second))
	sendRecordSet(t, conn, subsystemSet("ss2", 1, 0, 2_000)) // the group ends at 2000: between the two
	if reason, acked := answers(t, conn, 0); acked != 1 {
		t.Fatalf("acknowledged through group %d, want 1 (refusal %q)", acked, reason)
	}
	conn.Close()
}

// resendPartlyJournaled has process 7 dial again and resend whole the
// record set that journalPartOfARecordSet's group 1 holds part of, with
// ss2's next horizon; it returns the secondary's answer.
func resendPartlyJournaled(t *testing.T, r *rig) (refusal string, acked uint64) {
	t.Helper()
	conn, typ, _ := r.dial(r.hello()) // process 7 again
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	first, second := partlyJournaledUpdates()
	sendRecordSet(t, conn, subsystemSet("ss1", 1, 1_000, 4_000, first, second))
	sendRecordSet(t, conn, subsystemSet("ss2", 2, 0, 5_000))
	return answers(t, conn, 1)
}

func partlyJournaledUpdates() (first, second recordset.Update) {
	return recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096, Timestamp: 1_000},
		recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: 4096, Timestamp: 3_000}
}
