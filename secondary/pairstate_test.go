package secondary

import (
	"fmt"
	"slices"
	"testing"

	"duplex/apply"
	"duplex/consistency"
	"duplex/recordset"
)

// A restarted primary announces every suspended pair's state again, since
// the marker it sent before may have died in its sidefile. Announced again,
// a suspension keeps the time it had; announced for the first time after
// the restart, it holds the volume as of the last group before it, the last
// one that can hold its writes.
func TestSuspensionAnnouncedAgainAfterPrimaryRestart(t *testing.T) {
	marker := func(vol string, ts int64, s recordset.PairState) recordset.Update {
		u := recordset.Marker{State: s}.Update(vol)
		u.Timestamp = ts
		return u
	}
	write := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Timestamp: 150, Length: 512, Data: make([]byte, 512)}
	p := newPairStates(nil)
	p.step(&consistency.Group{Number: 1, Time: 100}, 0)
	p.step(&consistency.Group{Number: 2, Time: 200, Updates: []recordset.Update{write, marker("a", 170, recordset.StateSuspended)}}, 100)
	if got := p.get("a"); got.State != StateSuspended || got.Since != 170 {
		t.Fatalf("a after its suspension at 170: %+v, want suspended since 170", got)
	}
	// The primary restarts; the marker of a came through, that of b died
	// in the sidefile with the group that would have carried it.
	p.step(&consistency.Group{Number: 3, Time: 900, Updates: []recordset.Update{
		marker("a", 800, recordset.StateSuspended), marker("b", 801, recordset.StateSuspended)}}, 200)
	if got := p.get("a"); got.State != StateSuspended || got.Since != 170 {
		t.Fatalf("a after its suspension was announced again: %+v, want suspended since 170 still", got)
	}
	if got := p.get("b"); got.State != StateSuspended || got.Since != 200 {
		t.Fatalf("b after a suspension it learns only from the restarted primary: %+v, want suspended since 200 (the last group before)", got)
	}
	if p.holding() {
		t.Fatalf("a suspension announced again opened a hold: %v", p.resyncing())
	}
}

// What the primary is told of the volumes consistent as of no time follows
// every group's markers, however often it was asked in between.
func TestInconsistentFollowsTheMarkers(t *testing.T) {
	marker := func(vol string, ts int64, s recordset.PairState) recordset.Update {
		u := recordset.Marker{State: s}.Update(vol)
		u.Timestamp = ts
		return u
	}
	p := newPairStates(nil)
	for i, tc := range []struct {
		updates []recordset.Update
		want    []string
	}{
		{nil, nil},
		{[]recordset.Update{marker("b", 150, recordset.StateFirstCopy), marker("a", 160, recordset.StateFirstCopy)}, []string{"a", "b"}},
		{[]recordset.Update{{Volume: "a", Kind: recordset.KindWrite, Timestamp: 250, Length: 512, Data: make([]byte, 512)}}, []string{"a", "b"}},
		{[]recordset.Update{marker("a", 350, recordset.StateCopyEnd)}, []string{"b"}},
		{[]recordset.Update{marker("b", 450, recordset.StateCopyEnd)}, nil},
	} {
		g := uint64(i + 1)
		p.step(&consistency.Group{Number: g, Time: int64(g) * 100, Updates: tc.updates}, int64(g-1)*100)
		for range 2 {
			if got := p.inconsistent(); !slices.Equal(got, tc.want) {
				t.Fatalf("after group %d: inconsistent %q, want %q", g, got, tc.want)
			}
		}
		if got := p.clone().inconsistent(); !slices.Equal(got, tc.want) {
			t.Fatalf("a clone after group %d: inconsistent %q, want %q", g, got, tc.want)
		}
	}
}

// The receipt of an idle secondary of 1,024 volumes, 16 of them copying,
// asks which volumes are consistent as of no time; a journaled group
// (once a second when idle) recomputes it.
func BenchmarkInconsistent1024(b *testing.B) {
	vols := map[string]apply.VolumeState{}
	for i := range 1024 {
		v := apply.VolumeState{State: StateDuplex}
		if i%64 == 0 {
			v = neverCopied
		}
		vols[fmt.Sprintf("v%04d", i)] = v
	}
	p := newPairStates(vols)
	b.Run("per receipt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.unknownValid = false // as every receipt did before the list was kept
			p.inconsistent()
		}
	})
	b.Run("kept", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.inconsistent()
		}
	})
}
