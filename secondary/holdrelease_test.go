package secondary

import (
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"duplex/apply"
	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// TestSuspendedResyncGivesUpItsHoldBeforeTheJournalFills: a pair suspended
// in the middle of its resync never sends the copy's end, so its hold would
// keep every later group unapplied until the journal's file system is full,
// and then the secondary stops for every volume. Before that, once the
// journal's free space falls to what the journal itself needs, the
// secondary gives up the hold: the held volume is reported not consistent
// (its image from before the resync is lost), everything held is applied,
// the journal is released, and the other volumes go on. The release is
// journaled, so a restart (and RecoversTo) agree with it; the volume is
// consistent again once a later copy of it ends.
func TestSuspendedResyncGivesUpItsHoldBeforeTheJournalFills(t *testing.T) {
	const budget = 40 << 20 // what the journal's file system has free before any segment
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 16 << 20, "vol2": 16 << 20}, subs: []string{"ss1"}}
	var sec atomic.Pointer[Secondary]
	cfg := func() Config {
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
		return c
	}
	open := func() {
		r.openVolumes()
		s, err := Open(cfg())
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		r.sec = s
		sec.Store(s)
		r.run()
	}
	t.Cleanup(r.close)
	open()
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy),
			mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)),
		writeSet(2, 20_000, mark("vol1", recordset.StateResync), recordset.Update{Volume: "vol1", Kind: recordset.KindCopy, Offset: 0, Length: 4096, Data: make([]byte, 4096)}),
		writeSet(3, 30_000, mark("vol1", recordset.StateSuspended)))
	if st := r.sec.Stats(); st.Group != 1 || len(st.Resyncing) != 1 {
		t.Fatalf("the resync of vol1 does not hold: applied group %d, resyncing %v", st.Group, st.Resyncing)
	}
	// vol2 goes on being written: 512 KiB a group, far more than the
	// journal's file system has room for while nothing is released.
	const n = 120
	var last int64
	for k := uint64(4); k <= n; k++ {
		last = int64(k) * 10_000
		sendAndWait(t, conn, writeSet(k, last, recordset.Update{Volume: "vol2", Kind: recordset.KindWrite, Offset: (k % 32) << 19, Length: 512 << 10}))
		if free := budget - r.sec.journal.Bytes(); free < 0 {
			st := r.sec.Stats()
			t.Fatalf("group %d: the journal outgrew its file system (%d bytes journaled, %d free at the start) while a suspended resync held %d groups (%d bytes): "+
				"the secondary would stop for every volume; applied group %d, vol2 %+v",
				k, r.sec.journal.Bytes(), budget, st.HeldGroups, st.HeldBytes, st.Group, r.sec.Volume("vol2"))
		}
	}
	st := r.sec.Stats()
	if st.HeldGroups != 0 || len(st.Resyncing) != 0 || st.Group != st.JournaledGroup {
		t.Fatalf("hold kept: applied group %d of %d journaled, %d held (%d bytes), resyncing %v", st.Group, st.JournaledGroup, st.HeldGroups, st.HeldBytes, st.Resyncing)
	}
	if st.HoldsReleased != 1 || st.LastHoldRelease == "" {
		t.Errorf("status does not say the hold was given up: %d releases, %q", st.HoldsReleased, st.LastHoldRelease)
	}
	t.Logf("hold given up: %s", st.LastHoldRelease)
	v1, v2 := r.sec.Volume("vol1"), r.sec.Volume("vol2")
	if v1.Consistent || !v1.Released || v1.State != StateSuspended {
		t.Errorf("vol1, whose hold was given up: %+v, want not consistent, released, suspended", v1)
	}
	if !v2.Consistent || v2.Time < last {
		t.Errorf("vol2: %+v, want consistent as of the last group (time >= %d)", v2, last)
	}

	// Restarted, it stays released: the release is in the journal.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	st0, err := apply.ReadState(filepath.Join(r.dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	open()
	if v := r.sec.Volume("vol1"); v.Consistent || !v.Released {
		t.Errorf("after a restart vol1 is %+v, want not consistent, released", v)
	}
	if v := st0.Volumes["vol1"]; !v.Inconsistent || !v.Released {
		t.Errorf("the state file records vol1 as %+v, want inconsistent, released", v)
	}

	// Resumed, its resync is not held (nothing consistent to keep), and
	// its end makes vol1 consistent again.
	conn, _, _ = r.dial(r.hello())
	sendAndWait(t, conn, writeSet(n+1, last+10_000, mark("vol1", recordset.StateResync)))
	if st := r.sec.Stats(); len(st.Resyncing) != 0 {
		t.Errorf("the resync after a released hold holds again: %v", st.Resyncing)
	}
	sendAndWait(t, conn, writeSet(n+2, last+20_000, mark("vol1", recordset.StateCopyEnd)))
	if v := r.sec.Volume("vol1"); !v.Consistent || v.Released || v.State != StateDuplex {
		t.Errorf("vol1 after its resync ended: %+v, want consistent duplex", v)
	}
}

// TestPrimarySendingAHoldReleaseIsRefused: giving up a hold is the
// secondary's decision, journaled by it; a primary that sends one is
// refused before anything of its record set is journaled.
func TestPrimarySendingAHoldReleaseIsRefused(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20})
	conn, _, _ := r.dial(r.hello())
	sendRecordSet(t, conn, writeSet(1, 10_000, mark("vol1", recordset.StateHoldReleased)))
	reason, acked := answers(t, conn, 0)
	if acked != 0 || reason == "" {
		t.Fatalf("acknowledged through group %d, refusal %q: want a refusal and nothing journaled", acked, reason)
	}
	if want := "only a secondary writes"; !strings.Contains(reason, want) {
		t.Errorf("refusal %q does not say %q", reason, want)
	}
}
