package secondary

import (
	"sync/atomic"
	"testing"

	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// TestResyncWithinTheReportedFreeSpaceKeepsItsHold: the primary starts a
// consistent resync only when it fits the journal free space the secondary
// reports; the secondary gives a hold up when its journal's file system
// falls to what the journal needs besides the hold (holdReserve). The two
// must measure room the same way: a resync that fits the reported free space
// must be held to its end, never given up near it.
func TestResyncWithinTheReportedFreeSpaceKeepsItsHold(t *testing.T) {
	const budget = 40 << 20 // free on the journal's file system before any segment
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 64 << 20}, subs: []string{"ss1"}}
	var sec atomic.Pointer[Secondary]
	r.openVolumes()
	c := r.config()
	c.FS = roomFS{FS: disk.OS, free: 64 << 20}
	c.LargestGroup = 1 << 20
	c.JournalFree = func() (uint64, error) {
		s := sec.Load()
		if s == nil {
			return budget, nil
		}
		return uint64(max(0, budget-s.journal.Bytes())), nil
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
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	welcome, err := transport.DecodePosition(body)
	if err != nil {
		t.Fatal(err)
	}
	sendAndWait(t, conn, writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol1", recordset.StateCopyEnd)))
	reported := welcome.JournalFree
	if reported == 0 {
		t.Fatal("the welcome reports no journal free space")
	}
	// A resync that the primary's check lets through: its copy, with the
	// group framing, stays a little below what the secondary reported.
	const piece = 512 << 10
	copyBytes := int64(reported) - 2<<20
	if copyBytes <= 0 {
		t.Fatalf("reported free space %d leaves no room for a resync", reported)
	}
	regions := int(copyBytes / piece)
	sendAndWait(t, conn, writeSet(2, 20_000, recordset.Marker{State: recordset.StateResync, Bytes: uint64(regions) * piece}.Update("vol1")))
	seq := uint64(3)
	for i := range regions {
		ts := int64(seq) * 10_000
		sendAndWait(t, conn, writeSet(seq, ts, recordset.Update{Volume: "vol1", Kind: recordset.KindCopy, Offset: uint64(i) * piece, Length: piece, Data: make([]byte, piece)}))
		seq++
	}
	sendAndWait(t, conn, writeSet(seq, int64(seq)*10_000, mark("vol1", recordset.StateCopyEnd)))
	st := r.sec.Stats()
	if st.HoldsReleased != 0 {
		t.Fatalf("the secondary reported %d bytes free and gave up the hold of a %d-byte resync that fits them (reserve %d): %s",
			reported, int64(regions)*piece, r.sec.holdReserve(), st.LastHoldRelease)
	}
	if v := r.sec.Volume("vol1"); !v.Consistent || v.State != StateDuplex {
		t.Fatalf("vol1 after its resync ended: %+v, want consistent duplex", v)
	}
}
