package pair

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"duplex/actlog"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/volume"
)

// A pair-state marker lives only in the sidefile. Kill -9 of the primary
// after Suspend answered (the pair state is saved) but before the secondary
// journaled the Suspended marker (any time while the link is down) loses it,
// so Open announces a suspended (or deleted) pair's state again: otherwise
// the secondary keeps the volume as duplex, consistent with the others at
// every later group, while its writes since go only to the primary's bitmap.
func TestOpenReannouncesSuspension(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	state := filepath.Join(dir, "pairs")
	os.MkdirAll(state, 0o755)
	st := persisted{Clean: true, Pairs: []*Pair{
		{Volume: "a", Subsystem: "s1", State: Duplex, Size: size},
		{Volume: "b", Subsystem: "s1", State: Duplex, Size: size},
	}}
	b, _ := json.Marshal(st)
	os.WriteFile(filepath.Join(state, "pairs.json"), b, 0o644)
	open := func() (*Manager, *subsystem.Subsystem) {
		vols := map[string]*volume.Volume{}
		for _, n := range []string{"a", "b"} {
			v, err := volume.Open(filepath.Join(dir, n+".img"), size)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { v.Close() })
			vols[n] = v
		}
		ss := subsystem.New("s1", timer.New(), sidefile.New(64<<20), vols, []string{"a", "b"})
		al, rec, err := actlog.Open(filepath.Join(dir, "actlog"), map[string]int64{"a": size, "b": size}, actlog.DefaultRegion)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { al.Close() })
		ss.SetActivityLog(al)
		mg, err := Open(Options{Dir: state, ActivityLog: al, Recovered: rec}, &dropMover{subs: []*subsystem.Subsystem{ss}},
			[]Volume{{Name: "a", Subsystem: ss, Size: size}, {Name: "b", Subsystem: ss, Size: size}})
		if err != nil {
			t.Fatal(err)
		}
		return mg, ss
	}
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
