package secondary

import (
	"bytes"
	"testing"
	"time"

	"duplex/recordset"
)

// TestAResyncEndingBeforeTheOthersBeginLeavesThemAsOfTheirSuspension: a
// resync (vol3) runs while another pair (vol4) is suspended, its writes
// meanwhile marked in its bitmap only, and vol3's copy ends before vol4's
// resync begins. The held groups are applied with vol3's writes stamped
// after the suspension, and vol4 stays as it was: the secondary must report
// vol4 consistent as of its suspension, not with the session, until its own
// resync ends. An operator's suspension of one pair makes this stream. A
// primary restarted after kill -9 in the middle of vol3's resync, vol4's
// activity-log regions too large for its sidefile, made it too, by itself,
// breaking the set (the operations test, seed 1796321467380203983, step
// 90): it now suspends every pair with vol4 and resumes them together
// (pair.awaitRoomAtStart, e2e TestDependentWritesThroughARestartThatWaitsForRoom),
// but what the secondary reports of such a stream stays as here.
func TestAResyncEndingBeforeTheOthersBeginLeavesThemAsOfTheirSuspension(t *testing.T) {
	r := newRig(t, map[string]int64{"vol3": 1 << 20, "vol4": 1 << 20})
	conn, _, _ := r.dial(r.hello())
	block := func(b byte) []byte { return bytes.Repeat([]byte{b}, 4096) }
	data := func(vol string, off uint64, kind recordset.Kind, b byte) recordset.Update {
		return recordset.Update{Volume: vol, Kind: kind, Offset: off, Length: 4096, Data: block(b)}
	}
	read := func(vol string, off int64) byte {
		t.Helper()
		p := make([]byte, 4096)
		if err := r.sec.ReadAt(vol, p, off); err != nil {
			t.Fatal(err)
		}
		return p[0]
	}
	waitApplied := func(group uint64) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); r.sec.Stats().Group < group; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("group %d not applied: %+v", group, r.sec.Stats())
			}
		}
	}
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol3", recordset.StateFirstCopy), mark("vol4", recordset.StateFirstCopy),
			mark("vol3", recordset.StateCopyEnd), mark("vol4", recordset.StateCopyEnd),
			data("vol3", 0, recordset.KindWrite, 7), data("vol4", 4096, recordset.KindWrite, 7)))
	waitApplied(1)
	before := r.sec.Stats().Time
	// The restart: vol3's resync goes on, vol4 is suspended.
	sendAndWait(t, conn,
		writeSet(2, 20_000, mark("vol3", recordset.StateResync), mark("vol4", recordset.StateSuspended),
			data("vol3", 8192, recordset.KindCopy, 7)),
		// A write to vol4 goes to its bitmap; the next, to vol3, is captured.
		writeSet(3, 30_000, data("vol3", 0, recordset.KindWrite, 8), mark("vol3", recordset.StateCopyEnd)))
	waitApplied(3)
	if got := read("vol3", 0); got != 8 {
		t.Fatalf("vol3 after its resync ended: block 0 holds %d, want 8", got)
	}
	if got := read("vol4", 4096); got != 7 {
		t.Fatalf("vol4, suspended: block 1 holds %d, want 7", got)
	}
	v3, v4, st := r.sec.Volume("vol3"), r.sec.Volume("vol4"), r.sec.Stats()
	if !v3.Consistent || v3.Time != st.Time {
		t.Errorf("vol3 after its resync ended: %+v, want consistent with the session as of %d", v3, st.Time)
	}
	if !v4.Consistent || !v4.AsOfSuspension || v4.Time != before || v4.Time >= st.Time {
		t.Errorf("vol4, suspended by the restart while vol3's resync ended: %+v, want consistent as of its suspension at %d (the group before it), before the session's %d",
			v4, before, st.Time)
	}
	// vol4 resumes: its resync copies what its bitmap marked.
	sendAndWait(t, conn,
		writeSet(4, 40_000, mark("vol4", recordset.StateResync), data("vol4", 4096, recordset.KindCopy, 8)),
		writeSet(5, 50_000, mark("vol4", recordset.StateCopyEnd)))
	waitApplied(5)
	v4, st = r.sec.Volume("vol4"), r.sec.Stats()
	if got := read("vol4", 4096); got != 8 || !v4.Consistent || v4.AsOfSuspension || v4.Time != st.Time {
		t.Errorf("vol4 after its resync ended: block 1 holds %d, %+v; want 8, consistent with the session as of %d", got, v4, st.Time)
	}
}
