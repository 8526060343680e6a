package secondary

import (
	"sync/atomic"
	"testing"

	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// TestAGroupJournaledBesideAHoldLeavesTheReserve: the secondary keeps a
// hold only while the group it journals leaves the journal its reserve
// (holdReserve); past that it gives the hold up. The group's room must be
// counted as its record lies on the disk, gaps included (a group's large
// updates are written directly where they arrived, each after a gap of up
// to a grain): counted as its data alone, a group that just fits by that
// count is journaled beside the hold and eats into the reserve.
func TestAGroupJournaledBesideAHoldLeavesTheReserve(t *testing.T) {
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 16 << 20, "vol2": 16 << 20}, subs: []string{"ss1"}}
	var sec atomic.Pointer[Secondary]
	var budget atomic.Int64 // free on the journal's file system before any segment
	budget.Store(1 << 30)
	r.openVolumes()
	c := r.config()
	c.FS = roomFS{FS: disk.OS, free: 64 << 20}
	c.LargestGroup = 1 << 20
	c.JournalFree = func() (uint64, error) {
		s := sec.Load()
		if s == nil {
			return uint64(budget.Load()), nil
		}
		return uint64(max(0, budget.Load()-s.journal.Bytes())), nil
	}
	s, err := Open(c)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	r.sec = s
	sec.Store(s)
	r.run()
	t.Cleanup(r.close)
	conn, typ, body := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome: %s", typ, body)
	}
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy),
			mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)),
		writeSet(2, 20_000, mark("vol1", recordset.StateResync), recordset.Update{Volume: "vol1", Kind: recordset.KindCopy, Offset: 0, Length: 4096, Data: make([]byte, 4096)}),
		writeSet(3, 30_000, mark("vol1", recordset.StateSuspended)))
	if st := r.sec.Stats(); len(st.Resyncing) != 1 {
		t.Fatalf("setup: the resync of vol1 does not hold: resyncing %v", st.Resyncing)
	}

	// A group of sixteen 64 KiB writes, each journaled where it arrived
	// after its gap, with room for exactly its data and the reserve.
	const updates, size = 16, 64 << 10
	var ups []recordset.Update
	var data int64
	for k := range updates {
		ups = append(ups, recordset.Update{Volume: "vol2", Kind: recordset.KindWrite, Offset: uint64(k) * size, Length: size})
		data += 40 + size + int64(len("vol2"))
	}
	reserve := r.sec.holdReserve()
	budget.Store(r.sec.journal.Bytes() + reserve + 1024 + data)
	before := r.sec.journal.Bytes()
	sendAndWait(t, conn, writeSet(4, 40_000, ups...))
	st := r.sec.Stats()
	free := budget.Load() - r.sec.journal.Bytes()
	t.Logf("group of %d bytes of data took %d bytes of journal; reserve %d, free after it %d, holds released %d",
		updates*size, r.sec.journal.Bytes()-before, reserve, free, st.HoldsReleased)
	if st.HoldsReleased == 0 && free < reserve {
		t.Fatalf("the group was journaled beside the hold and left %d bytes free, less than the journal's reserve %d: "+
			"the hold should have been given up", free, reserve)
	}
}
