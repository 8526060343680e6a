package consistency

import (
	"runtime"
	"testing"

	"duplex/recordset"
)

// steadySet is a record set of n 4 KiB writes of one subsystem, stamped
// after ts, its horizon at its last stamp: what a steady stream of small
// writes brings every interval.
func steadySet(seq uint64, ts int64, n int, data []byte) *recordset.RecordSet {
	rs := &recordset.RecordSet{Session: session, Subsystem: "a", Seq: seq, Group: seq, Horizon: ts + int64(n)}
	rs.Updates = make([]recordset.Update, n)
	for i := range rs.Updates {
		rs.Updates[i] = recordset.Update{Volume: "vol-a", Kind: recordset.KindWrite, Offset: uint64(i) << 12, Length: uint64(len(data)),
			Timestamp: ts + 1 + int64(i), Seq: uint64(i), Data: data}
	}
	return rs
}

// A record set taken whole into a subsystem holding nothing pending is
// formed into its group as it came: its updates are neither copied nor
// grown into a new slice one append at a time (900 updates of 96 bytes
// took 180 KB of new memory a set, twice the set's own updates), and the
// group it forms holds them in order. A
// set added after it, before a group is formed, is appended without
// writing into the first one's updates.
func TestASetTakenWholeIsNotCopied(t *testing.T) {
	data := make([]byte, 4096)
	f := New(session, []string{"a"}, Start{})
	const sets = 50
	in := make([]*recordset.RecordSet, sets)
	for i := range in {
		in[i] = steadySet(uint64(i+1), int64(i)*900, 900, data)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i, rs := range in {
		if _, err := f.Add(rs); err != nil {
			t.Fatal(err)
		}
		g, ok := f.Form()
		if ts := int64(i+1) * 900; !ok || len(g.Updates) != 900 || g.Updates[0].Timestamp != ts-899 || g.Updates[899].Timestamp != ts {
			t.Fatalf("set %d: group %v, %d updates", i+1, ok, len(g.Updates))
		}
	}
	runtime.ReadMemStats(&after)
	// The group and its Through map: nothing that grows with the updates.
	perSet := (after.TotalAlloc - before.TotalAlloc) / sets
	t.Logf("%d bytes allocated a record set of 900 updates added and formed", perSet)
	if perSet > 4096 {
		t.Errorf("%d bytes allocated a record set of 900 updates added and formed, want at most 4096", perSet)
	}
	seq, ts := uint64(sets), int64(sets)*900

	first := steadySet(seq+1, ts, 3, data)
	second := steadySet(seq+2, ts+3, 2, data)
	kept := append([]recordset.Update(nil), first.Updates...)
	mustAdd(t, f, first, Accepted)
	mustAdd(t, f, second, Accepted)
	for i := range kept {
		if u := first.Updates[i]; u.Timestamp != kept[i].Timestamp || u.Offset != kept[i].Offset || u.Volume != kept[i].Volume || &u.Data[0] != &kept[i].Data[0] {
			t.Fatalf("update %d of the first set changed by adding the second: %+v, was %+v", i, first.Updates[i], kept[i])
		}
	}
	g, ok := f.Form()
	if want := []int64{ts + 1, ts + 2, ts + 3, ts + 4, ts + 5}; !ok || !slicesEqual(stamps(g.Updates), want) {
		t.Fatalf("group %v stamps %v, want %v", ok, stamps(g.Updates), want)
	}
}

func slicesEqual(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// BenchmarkAddFormSteady is the Former's part of a steady stream of 4 KiB
// writes: a record set of 900 updates added, and its group formed.
func BenchmarkAddFormSteady(b *testing.B) {
	data := make([]byte, 4096)
	f := New(session, []string{"a"}, Start{})
	sets := make([]*recordset.RecordSet, b.N)
	for i := range sets {
		sets[i] = steadySet(uint64(i+1), int64(i)*900, 900, data)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := f.Add(sets[i]); err != nil {
			b.Fatal(err)
		}
		if _, ok := f.Form(); !ok {
			b.Fatal("no group")
		}
	}
}

// A set taken whole may lie in an array with room past its end that holds
// other updates: here the next set's, waiting early for the gap before it.
// The set after the taken one is appended to the pending updates; written
// into that room, it would overwrite the early set's updates, and the
// group would hold the middle set twice and the early one never.
func TestASetTakenWholeIsNotAppendedInto(t *testing.T) {
	f := New(session, []string{"a"}, Start{})
	backing := append(set("a", 1, 3, 1, 2, 3).Updates, set("a", 3, 7, 6, 7).Updates...)
	first := &recordset.RecordSet{Session: session, Subsystem: "a", Seq: 1, Group: 1, Horizon: 3, Updates: backing[0:3]}
	early := &recordset.RecordSet{Session: session, Subsystem: "a", Seq: 3, Group: 3, Horizon: 7, Updates: backing[3:5]}
	mustAdd(t, f, early, Early)
	mustAdd(t, f, first, Accepted)
	mustAdd(t, f, set("a", 2, 5, 4, 5), Accepted)
	g, ok := f.Form()
	if want := []int64{1, 2, 3, 4, 5, 6, 7}; !ok || !slicesEqual(stamps(g.Updates), want) {
		t.Fatalf("group %v stamps %v, want %v", ok, stamps(g.Updates), want)
	}
	if got := stamps(early.Updates); !slicesEqual(got, []int64{6, 7}) {
		t.Fatalf("the early set's updates are stamped %v after the sets before it were added, were [6 7]", got)
	}
}

// A set taken whole and cut by the consistency time (the other subsystem's
// horizon falls inside it) is formed in two groups, each holding its own
// updates in order, and the set added after the cut joins the second
// without changing the first group's updates.
func TestASetTakenWholeIsCutAtTheConsistencyTime(t *testing.T) {
	f := New(session, []string{"a", "b"}, Start{})
	mustAdd(t, f, set("a", 1, 50, 10, 20, 30, 40, 50), Accepted)
	mustAdd(t, f, set("b", 1, 25), Accepted)
	g1, ok := f.Form()
	if want := []int64{10, 20}; !ok || !slicesEqual(stamps(g1.Updates), want) {
		t.Fatalf("first group %v stamps %v, want %v", ok, stamps(g1.Updates), want)
	}
	kept := append([]recordset.Update(nil), g1.Updates...)
	mustAdd(t, f, set("a", 2, 70, 60, 70), Accepted)
	mustAdd(t, f, set("b", 2, 70, 65), Accepted)
	g2, ok := f.Form()
	if want := []int64{30, 40, 50, 60, 65, 70}; !ok || !slicesEqual(stamps(g2.Updates), want) {
		t.Fatalf("second group %v stamps %v, want %v", ok, stamps(g2.Updates), want)
	}
	for i := range kept {
		if u := g1.Updates[i]; u.Timestamp != kept[i].Timestamp || u.Offset != kept[i].Offset || &u.Data[0] != &kept[i].Data[0] {
			t.Fatalf("update %d of the first group changed as later sets were added: %+v, was %+v", i, u, kept[i])
		}
	}
}
