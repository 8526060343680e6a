package secondary

import (
	"testing"

	"duplex/disk"
	"duplex/journal"
	"duplex/recordset"
	"duplex/transport"
)

// TestARestartedHoldReservesTheJournalsSegmentsAsSized: a journal whose
// segments are sized to its file system is sized twice at a restart: by
// journal.Open, which counts every segment but the active one as room, and
// again by the secondary's own check (CheckRoom), for which the segments a
// resync holds are not. The reserve the secondary keeps beside a hold, and
// reports the free space net of, is that of the segments the journal then
// closes at: kept from the first sizing, it is larger than the journal
// needs, and the first group after the restart gives up a hold that Open
// found room for.
func TestARestartedHoldReservesTheJournalsSegmentsAsSized(t *testing.T) {
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 16 << 20}, subs: []string{"ss1"}}
	const largest = 1 << 20
	cfg := func(free int64) Config {
		c := r.config()
		c.FS = roomFS{FS: disk.OS, free: free}
		c.LargestGroup = largest
		return c
	}
	t.Cleanup(r.close)
	// 14 MiB free: segments of 3 MiB.
	r.openVolumes()
	sec, err := Open(cfg(14 << 20))
	if err != nil {
		t.Fatal(err)
	}
	r.sec = sec
	r.run()
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	// vol1's first copy ends, then a resync of it begins: every later
	// group is held, and none of the segments after the first group's is
	// room until it ends.
	sendAndWait(t, conn, writeSet(1, 5_000, mark("vol1", recordset.StateFirstCopy), mark("vol1", recordset.StateCopyEnd)))
	sendRecordSet(t, conn, writeSet(2, 10_000, recordset.Marker{State: recordset.StateResync, Bytes: 8 << 20}.Update("vol1")))
	const n = 17
	for k := uint64(3); k <= n; k++ {
		sendRecordSet(t, conn, writeSet(k, int64(k)*10_000, recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: (k % 16) << 20, Length: 512 << 10}))
	}
	if reason, acked := answers(t, conn, n-1); acked < n {
		t.Fatalf("acknowledged through %d, want %d (refusal %q)", acked, n, reason)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	// Restarted with 8 MiB free, which the journal's own check finds
	// enough beside the held segments (smaller segments: 2 of 1.5 MiB and
	// 2 groups of 1 MiB).
	r.openVolumes()
	c := cfg(8 << 20)
	c.JournalFree = func() (uint64, error) { return 8 << 20, nil }
	if r.sec, err = Open(c); err != nil {
		t.Fatalf("refused with 8 MiB free: %v", err)
	}
	r.run()
	if got, want := r.sec.JournalReserve(), journal.Needs(r.sec.journal.SegmentSize(), largest); got != want {
		t.Errorf("the secondary reserves %.2f MiB beside the hold; the journal, closing segments at %.2f MiB, needs %.2f MiB",
			float64(got)/(1<<20), float64(r.sec.journal.SegmentSize())/(1<<20), float64(want)/(1<<20))
	}
	conn, typ, _ = r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d after the restart, want a welcome", typ)
	}
	sendAndWait(t, conn, writeSet(n+1, (n+1)*10_000, recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: 0, Length: 4096}))
	st := r.sec.Stats()
	if st.HoldsReleased != 0 || st.HeldGroups != n {
		t.Fatalf("a 4 KiB group with 8 MiB free gave the hold up (holds given up %d, held groups %d, want 0 and %d): %s",
			st.HoldsReleased, st.HeldGroups, n, st.LastHoldRelease)
	}
}
