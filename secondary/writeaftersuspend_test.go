package secondary

import (
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

// TestWritesAfterASuspensionEndItsClaim: the primary captures a pair's
// Suspended marker (pair.Manager.Suspend) and the secondary journals it,
// but the primary is killed before its pair state says suspended (the
// marker ships within an interval, the save fsyncs the bitmap and the pair
// state after it). Restarted, the primary takes the pair as duplex and goes
// on replicating its writes, with no marker (Open reannounces only
// suspended and deleted pairs, and an activity log without marks copies
// nothing). The secondary applies those writes, yet goes on reporting the
// volume consistent as of that old suspension (status, and the per-volume
// lines of recover): its bytes are no longer the primary's as of that
// time. A second suspension (the operator's retry) keeps the old time too
// ("a suspended one keeps its time"). A volume reported consistent as of T
// must hold no write stamped after T.
func TestWritesAfterASuspensionEndItsClaim(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20})
	conn, _, _ := r.dial(r.hello())
	suspend := mark("vol1", recordset.StateSuspended)
	suspend.Timestamp = 30_005
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), write("vol1", 0)),
		writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd)),
		writeSet(3, 30_000, write("vol1", 4096), suspend))
	if v := r.sec.Volume("vol1"); !v.Consistent || v.Time != suspend.Timestamp {
		t.Fatalf("setup: vol1 %+v, want consistent as of its suspension at %d", v, suspend.Timestamp)
	}
	conn.Close()

	// The primary restarted (a new process), the pair duplex in its state.
	h := r.hello()
	h.Instance = 8
	conn, typ, _ := r.dial(h)
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	const lastWrite = 40_000
	sendAndWait(t, conn, writeSet(4, lastWrite, write("vol1", 8192)))
	if v := r.sec.Volume("vol1"); v.Consistent && v.Time < lastWrite {
		t.Errorf("vol1 holds a write stamped %d, applied in group 4, yet is reported consistent as of %d (state %s): "+
			"its bytes are not the primary's as of that time", lastWrite, v.Time, v.State)
	}
	// The operator's retry of the suspension.
	again := mark("vol1", recordset.StateSuspended)
	again.Timestamp = 50_005
	sendAndWait(t, conn, writeSet(5, 50_000, again))
	if v := r.sec.Volume("vol1"); v.Consistent && v.Time < lastWrite {
		t.Errorf("vol1 suspended again at %d after a write stamped %d, yet reported consistent as of %d (state %s)",
			again.Timestamp, lastWrite, v.Time, v.State)
	}
}
