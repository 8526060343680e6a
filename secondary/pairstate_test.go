package secondary

import (
	"testing"

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
