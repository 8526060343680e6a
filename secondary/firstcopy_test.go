package secondary

import (
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

// sendAndWait sends the record sets of sets, one group each, and waits
// until the last one is acknowledged.
func sendAndWait(t *testing.T, conn transport.Conn, sets ...*recordset.RecordSet) {
	t.Helper()
	for _, rs := range sets {
		sendRecordSet(t, conn, rs)
	}
	last := sets[len(sets)-1].Group
	if reason, acked := answers(t, conn, last-1); acked < last {
		t.Fatalf("acknowledged through group %d, want %d (refusal %q)", acked, last, reason)
	}
}

func mark(vol string, s recordset.PairState) recordset.Update {
	return recordset.Marker{State: s, Bytes: 1 << 20}.Update(vol)
}

func write(vol string, off uint64) recordset.Update {
	return recordset.Update{Volume: vol, Kind: recordset.KindWrite, Offset: off, Length: 4096}
}

// TestVolumeNeverCopiedIsNotConsistent: a secondary volume that never
// received a whole first copy holds no state the primary ever had, whatever
// the stream says or fails to say about it: with no first-copy marker
// received (a secondary re-created under a primary that takes its pairs as
// duplex, or a marker lost on the way), writes alone never make it
// consistent; only the end of a copy does. The truth survives a restart.
func TestVolumeNeverCopiedIsNotConsistent(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
	check := func(when string, wantConsistent map[string]bool) {
		t.Helper()
		for vol, want := range wantConsistent {
			v := r.sec.Volume(vol)
			if v.Consistent != want {
				t.Errorf("%s: %s reported consistent=%v (as of %d, state %s, first copy %v), want consistent=%v",
					when, vol, v.Consistent, v.Time, v.State, v.FirstCopy, want)
			}
			if !want && !v.FirstCopy {
				t.Errorf("%s: %s not consistent but not reported as a first copy not complete (state %s)", when, vol, v.State)
			}
		}
	}
	check("fresh secondary", map[string]bool{"vol1": false, "vol2": false})
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	// vol1 has its first copy, announced and ended; vol2 gets writes only.
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), write("vol1", 0), write("vol2", 0)),
		writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd), write("vol2", 4096)),
		writeSet(3, 30_000, write("vol1", 8192), write("vol2", 8192)))
	check("after writes", map[string]bool{"vol1": true, "vol2": false})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.open()
	check("after a restart", map[string]bool{"vol1": true, "vol2": false})
}

// TestFirstCopyEndedThenSuspendedIsConsistentAsOfTheSuspension: a first
// copy whose end reached the secondary before the pair was suspended left a
// whole copy there, which is the primary volume's as of the suspension.
func TestFirstCopyEndedThenSuspendedIsConsistentAsOfTheSuspension(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20})
	conn, _, _ := r.dial(r.hello())
	suspend := mark("vol1", recordset.StateSuspended)
	suspend.Timestamp = 30_005
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), write("vol1", 0)),
		writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd)),
		writeSet(3, 30_000, write("vol1", 4096), suspend))
	v := r.sec.Volume("vol1")
	if !v.Consistent || v.Time != suspend.Timestamp || v.State != StateSuspended {
		t.Errorf("vol1: %+v, want consistent as of its suspension at %d", v, suspend.Timestamp)
	}
}

// TestResyncOverVolumeNeverCopiedIsNotConsistent: a secondary re-created
// under a primary that takes its pairs as duplex (it adopts the primary's
// data generation and gets the stream from there) holds no whole copy of
// any volume. A link cut long enough to suspend the session, or a suspend
// and resume by hand, then resyncs only the regions written while
// suspended; the end of that resync makes the volume the primary's only
// where a whole copy lies underneath. Here there is none: the volume must
// stay not consistent, not be reported consistent as of the resync's end.
func TestResyncOverVolumeNeverCopiedIsNotConsistent(t *testing.T) {
	const size = 1 << 20
	r := newRig(t, map[string]int64{"vol1": size})
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	// One region of the volume changed while suspended: the resync copies
	// 4 KiB of 1 MiB, and nothing else of the volume ever reached here but
	// a write.
	resync := recordset.Marker{State: recordset.StateResync, Bytes: 4096}.Update("vol1")
	sendAndWait(t, conn,
		writeSet(1, 10_000, write("vol1", 0)),
		writeSet(2, 20_000, resync, recordset.Update{Volume: "vol1", Kind: recordset.KindCopy, Offset: 8192, Length: 4096, Data: make([]byte, 4096)}),
		writeSet(3, 30_000, mark("vol1", recordset.StateCopyEnd)))
	if v := r.sec.Volume("vol1"); v.Consistent {
		t.Errorf("vol1, never copied whole (one write and a 4 KiB resync of its %d bytes), reported consistent as of %d (state %s, first copy %v)",
			size, v.Time, v.State, v.FirstCopy)
	}
	if v := r.sec.Volume("vol1"); !v.NoWholeCopy {
		t.Errorf("vol1 not reported as never copied whole, which no resync mends: %+v", v)
	}
	// The way out: the pair deleted and added again, whose first copy is
	// whole.
	sendAndWait(t, conn,
		writeSet(4, 40_000, mark("vol1", recordset.StateDeleted)),
		writeSet(5, 50_000, mark("vol1", recordset.StateFirstCopy), write("vol1", 0)),
		writeSet(6, 60_000, mark("vol1", recordset.StateCopyEnd)))
	if v := r.sec.Volume("vol1"); !v.Consistent || v.NoWholeCopy {
		t.Errorf("vol1 after a delete, an add and its first copy: %+v, want consistent", v)
	}
}
