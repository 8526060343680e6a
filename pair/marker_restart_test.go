package pair

import (
	"testing"

	"duplex/recordset"
	"duplex/timer"
)

// A pair-state marker lives only in the sidefile. Kill -9 of the primary
// after Suspend answered (the pair state is saved) but before the secondary
// journaled the Suspended marker (any time while the link is down) loses it,
// so Open announces a suspended (or deleted) pair's state again: otherwise
// the secondary keeps the volume as duplex, consistent with the others at
// every later group, while its writes since go only to the primary's bitmap.
func TestOpenReannouncesSuspension(t *testing.T) {
	dir := t.TempDir()
	open := restartable(t, dir, savePairs(t, dir, true, duplexAB(4<<20)...), 4<<20, timer.New())
	mg, _ := open()
	if err := mg.Suspend("a"); err != nil { // answered: saved
		t.Fatal(err)
	}
	if _, err := mg.Delete("b"); err != nil {
		t.Fatal(err)
	}
	// kill -9: the sidefile, with the marker, is gone.
	mg2, ss := open()
	for _, p := range mg2.Pairs() {
		if p.Volume == "a" && p.State != Suspended {
			t.Fatalf("a is %s after the restart, want suspended", p.State)
		}
	}
	ups, _, _ := ss.Drain()
	announced := map[string]recordset.PairState{}
	for _, u := range ups {
		if m, err := recordset.DecodeMarker(u); err == nil && u.Kind == recordset.KindMarker {
			announced[u.Volume] = m.State
		}
	}
	if announced["a"] != recordset.StateSuspended {
		t.Fatalf("the restarted primary never announces that a is suspended: the secondary takes it as duplex for good")
	}
	if announced["b"] != recordset.StateDeleted {
		t.Fatalf("the restarted primary never announces that b is deleted: the secondary takes it as duplex for good")
	}
}
