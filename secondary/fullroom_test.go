package secondary

import (
	"sync/atomic"
	"testing"

	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// TestAFullJournalFileSystemIsNoRoom: a journal file system with no byte
// left reads 0 free, which is a reading, not "unknown" (only a failed
// statfs is). The secondary must tell the primary it has no room (so a
// consistent resync is refused, not started unchecked) and give up a hold
// rather than keep it until the journal cannot grow at all.
func TestAFullJournalFileSystemIsNoRoom(t *testing.T) {
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20}, subs: []string{"ss1"}}
	var free atomic.Uint64
	free.Store(1 << 30)
	r.openVolumes()
	c := r.config()
	c.FS = roomFS{FS: disk.OS, free: 64 << 20}
	c.LargestGroup = 1 << 20
	c.JournalFree = func() (uint64, error) { return free.Load(), nil }
	s, err := Open(c)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	r.sec = s
	r.run()
	t.Cleanup(r.close)

	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy),
			mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)),
		writeSet(2, 20_000, mark("vol1", recordset.StateResync), recordset.Update{Volume: "vol1", Kind: recordset.KindCopy, Offset: 0, Length: 4096, Data: make([]byte, 4096)}),
		writeSet(3, 30_000, mark("vol1", recordset.StateSuspended)))
	if st := r.sec.Stats(); len(st.Resyncing) != 1 {
		t.Fatalf("setup: the resync of vol1 does not hold: resyncing %v", st.Resyncing)
	}

	free.Store(0) // the file system is full
	if got := r.sec.reportedFree(); got != 1 {
		t.Errorf("with the journal's file system full, the secondary reports %d bytes free to the primary, want 1 (no room; 0 says unknown, and the primary then checks nothing)", got)
	}
	sendAndWait(t, conn, writeSet(4, 40_000, recordset.Update{Volume: "vol2", Kind: recordset.KindWrite, Offset: 0, Length: 4096}))
	if st := r.sec.Stats(); st.HoldsReleased != 1 || len(st.Resyncing) != 0 {
		t.Errorf("with the journal's file system full, the hold is kept (releases %d, resyncing %v): the journal cannot grow, and every volume stops",
			st.HoldsReleased, st.Resyncing)
	}
}
