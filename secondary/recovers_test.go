package secondary

import (
	"path/filepath"
	"testing"

	"duplex/apply"
	"duplex/consistency"
	"duplex/journal"
	"duplex/recordset"
)

// TestRecoversToAgreesWithReplay: for a journal that ends at every group of a
// resync, before it, inside it and after it, RecoversTo names the group a
// reopened secondary applies through: the last one before the resync until
// its copy ends.
func TestRecoversToAgreesWithReplay(t *testing.T) {
	write := func(off uint64, ts int64) recordset.Update {
		return recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: off, Length: 512, Timestamp: ts, Data: make([]byte, 512)}
	}
	copyOf := func(off uint64, ts int64) recordset.Update {
		u := write(off, ts)
		u.Kind = recordset.KindCopy
		return u
	}
	marker := func(m recordset.Marker, ts int64) recordset.Update {
		u := m.Update("a")
		u.Timestamp = ts
		return u
	}
	groups := []*consistency.Group{
		// The first copy ends: a resync after it is over a consistent copy.
		{Number: 1, Time: 1100, Updates: []recordset.Update{marker(recordset.Marker{State: recordset.StateFirstCopy, Bytes: 512}, 999), write(0, 1000),
			marker(recordset.Marker{State: recordset.StateCopyEnd}, 1001)}},
		{Number: 2, Time: 2100, Updates: []recordset.Update{marker(recordset.Marker{State: recordset.StateResync, Bytes: 8192}, 2000), copyOf(4096, 2001)}},
		{Number: 3, Time: 3100, Updates: []recordset.Update{copyOf(8192, 3000), write(512, 3001)}},
		{Number: 4, Time: 4100, Updates: []recordset.Update{marker(recordset.Marker{State: recordset.StateCopyEnd}, 4000), write(1024, 4001)}},
		{Number: 5, Time: 5100, Updates: []recordset.Update{write(1536, 5000)}},
	}
	want := []uint64{1, 1, 1, 4, 5}
	for k := 1; k <= len(groups); k++ {
		r := newRig(t, map[string]int64{"a": 1 << 20})
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		j, err := journal.Open(r.config().JournalDir, journal.Options{MaxRecord: MaxGroupBytes})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups[:k] {
			g.Through = map[string]uint64{"ss1": g.Number}
			data, err := consistency.EncodeGroup(nil, rigSession, g)
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Append(g.Number, data); err != nil {
				t.Fatal(err)
			}
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		st, err := apply.ReadState(filepath.Join(r.dir, "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		g, gt := RecoversTo(st, groups[:k])
		r.openVolumes()
		sec, err := Open(r.config())
		if err != nil {
			t.Fatal(err)
		}
		pos := sec.Position()
		sec.Close()
		for _, v := range r.vols {
			v.Close()
		}
		if g != want[k-1] || pos.Group != g || pos.Time != gt {
			t.Errorf("journal through group %d: RecoversTo says group %d (time %d), the reopened secondary is at group %d (time %d), want group %d",
				k, g, gt, pos.Group, pos.Time, want[k-1])
		}
	}
}
