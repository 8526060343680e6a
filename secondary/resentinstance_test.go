package secondary

import (
	"bytes"
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

// TestResentOnlyFromTheProcessWhoseRecordSetsWereJournaled: a journaled
// repeat is skipped only from the primary process that sent the journaled
// groups. A new primary process that was welcomed but sent nothing before
// the secondary restarted did not send them: an update it stamped at or
// before the consistency time (its clock behind the old primary's) was never
// journaled, and skipping it loses it while the primary frees it as
// journaled. It must be refused as stale, or applied.
func TestResentOnlyFromTheProcessWhoseRecordSetsWereJournaled(t *testing.T) {
	t.Run("first record set", func(t *testing.T) { resentFromAnotherProcess(t, false) })
	// Before record sets past the first could repeat journaled updates, a
	// horizon-only record set first left the stale update refused.
	t.Run("after a horizon-only record set", func(t *testing.T) { resentFromAnotherProcess(t, true) })
}

func resentFromAnotherProcess(t *testing.T, idleFirst bool) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	conn, typ, _ := r.dial(r.hello()) // process 7
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendRecordSet(t, conn, subsystemSet("ss1", 1, 10_000, 11_000,
		recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096, Timestamp: 10_000}))
	if reason, acked := answers(t, conn, 0); acked != 1 {
		t.Fatalf("acknowledged through group %d, want 1 (refusal %q)", acked, reason)
	}
	conn.Close()

	// A new primary process, its clock behind, is welcomed; the link
	// drops before it sends anything, and the secondary restarts.
	h := r.hello()
	h.Instance = 8
	conn, typ, _ = r.dial(h)
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	conn.Close()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.open()

	conn, typ, _ = r.dial(h)
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	behind := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: 4096, Timestamp: 10_500, Data: bytes.Repeat([]byte{0xbb}, 4096)}
	later := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 8192, Length: 4096, Timestamp: 15_000, Data: bytes.Repeat([]byte{0xcc}, 4096)}
	seq := uint64(2)
	if idleFirst {
		sendRecordSet(t, conn, subsystemSet("ss1", seq, 0, 10_200))
		seq++
	}
	sendRecordSet(t, conn, subsystemSet("ss1", seq, 10_500, 20_000, behind, later))
	reason, acked := answers(t, conn, 1)
	if reason != "" {
		t.Logf("refused: %s", reason)
		return
	}
	got := make([]byte, 4096)
	if err := r.vols["a"].ReadAt(got, 8192); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, later.Data) {
		t.Fatalf("group %d acknowledged, yet the update stamped %d is not applied", acked, later.Timestamp)
	}
	if err := r.vols["a"].ReadAt(got, 4096); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, behind.Data) {
		t.Fatalf("process 8 never sent a journaled group, yet its update stamped %d (at or before the consistency time %d) was skipped as a journaled repeat: "+
			"group %d acknowledged, block 4096 of a holds %#x, not %#x; the update is lost", behind.Timestamp, 11_000, acked, got[0], behind.Data[0])
	}
}

// TestResentFromTheJournalingProcessAfterAnotherWasWelcomed: a process
// welcomed with nothing journaled does not take over the right to repeat
// journaled updates; the process whose record sets were journaled keeps it,
// across a restart, and its whole resend of a partly journaled record set is
// taken.
func TestResentFromTheJournalingProcessAfterAnotherWasWelcomed(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20}, "ss1", "ss2")
	journalPartOfARecordSet(t, r)

	other := r.hello()
	other.Instance = 8
	conn, typ, _ := r.dial(other)
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	conn.Close()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.open()

	if reason, acked := resendPartlyJournaled(t, r); reason != "" || acked != 2 {
		t.Fatalf("process 7 resent the record set its journaled group holds part of, after process 8 was welcomed and sent nothing: "+
			"refusal %q, acknowledged through group %d, want group 2", reason, acked)
	}
}
