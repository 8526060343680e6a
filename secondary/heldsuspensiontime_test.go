package secondary

import (
	"testing"

	"duplex/recordset"
)

// TestASuspensionHeldUnappliedIsNotItsTime: a volume's suspension is
// journaled while a resync of another volume holds every group after the
// one applied last. As applied, the volume is still duplex: consistent as of
// that group's time with the others, not as of its suspension, which it
// reaches only once the hold ends. The view must say which time it is, so
// status and recover do not call the applied group's time the suspension's.
func TestASuspensionHeldUnappliedIsNotItsTime(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
	conn, _, _ := r.dial(r.hello())
	suspend := mark("vol1", recordset.StateSuspended)
	suspend.Timestamp = 30_005
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy),
			mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)),
		writeSet(2, 20_000, mark("vol2", recordset.StateResync), recordset.Update{Volume: "vol2", Kind: recordset.KindCopy, Offset: 0, Length: 4096, Data: make([]byte, 4096)}),
		writeSet(3, 30_000, write("vol1", 4096), suspend))
	v := r.sec.Volume("vol1")
	if v.State != StateSuspended || !v.Consistent || v.Held {
		t.Fatalf("setup: vol1 %+v, want suspended (journaled), consistent, not held by a resync of its own", v)
	}
	if st := r.sec.Stats(); st.Group != 1 || v.Time != st.Time || v.AsOfSuspension {
		t.Errorf("vol1, its suspension at %d journaled but held unapplied: %+v, want consistent as of the applied group %d's time %d, not as of its suspension",
			suspend.Timestamp, v, st.Group, st.Time)
	}
	sendAndWait(t, conn, writeSet(4, 40_000, mark("vol2", recordset.StateCopyEnd)))
	if v := r.sec.Volume("vol1"); !v.Consistent || v.Time != suspend.Timestamp || !v.AsOfSuspension {
		t.Errorf("vol1, its suspension applied once the hold ended: %+v, want consistent as of its suspension at %d", v, suspend.Timestamp)
	}
}
