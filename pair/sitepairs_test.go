package pair

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"duplex/actlog"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/volume"
)

// The tests that open a Manager as a site does, over volumes a and b of one
// subsystem s1 and the pair states a run saved, build it from these.

// subsystemAB opens volumes a and b of size bytes in dir, closed when the
// test ends, as subsystem s1 with a 64 MiB sidefile, stamped by clock (nil:
// a timer of its own). It returns the subsystem and its volumes as Open
// takes them.
func subsystemAB(t *testing.T, dir string, size int64, clock *timer.Timer) (*subsystem.Subsystem, []Volume) {
	t.Helper()
	vols := map[string]*volume.Volume{}
	for _, n := range []string{"a", "b"} {
		v, err := volume.Open(filepath.Join(dir, n+".img"), size)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		vols[n] = v
	}
	if clock == nil {
		clock = timer.New()
	}
	ss := subsystem.New("s1", clock, sidefile.New(64<<20), vols, []string{"a", "b"})
	return ss, []Volume{{Name: "a", Subsystem: ss, Size: size}, {Name: "b", Subsystem: ss, Size: size}}
}

// duplexAB is pairs a and b of subsystem s1, size bytes each, duplex.
func duplexAB(size int64) []*Pair {
	return []*Pair{{Volume: "a", Subsystem: "s1", State: Duplex, Size: size}, {Volume: "b", Subsystem: "s1", State: Duplex, Size: size}}
}

// savePairs writes the pair states into dir/pairs as a run that stopped
// cleanly (clean) or not saved them, and returns dir/pairs.
func savePairs(t *testing.T, dir string, clean bool, pairs ...*Pair) string {
	t.Helper()
	state := filepath.Join(dir, "pairs")
	b, err := json.Marshal(persisted{Clean: clean, Pairs: pairs})
	if err == nil {
		err = os.MkdirAll(state, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(state, "pairs.json"), b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	return state
}

// activityLogAB opens the activity log of volumes a and b (size bytes) in
// dir, closed when the test ends, and has ss mark it. It returns the log
// and the regions it recovered, as Options take them.
func activityLogAB(t *testing.T, dir string, size int64, ss *subsystem.Subsystem) (*actlog.Log, map[string][][2]int64) {
	t.Helper()
	al, rec, err := actlog.Open(filepath.Join(dir, "actlog"), map[string]int64{"a": size, "b": size}, actlog.DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	ss.SetActivityLog(al)
	return al, rec
}

// restartable returns a function that opens the pairs saved in state over
// subsystemAB and its activity log in dir, with a mover whose link is down,
// as the primary does at each start (a kill -9 before it leaves the files
// as they were).
func restartable(t *testing.T, dir, state string, size int64, clock *timer.Timer) func() (*Manager, *subsystem.Subsystem) {
	return func() (*Manager, *subsystem.Subsystem) {
		t.Helper()
		ss, vols := subsystemAB(t, dir, size, clock)
		al, rec := activityLogAB(t, dir, size, ss)
		mg, err := Open(Options{Dir: state, ActivityLog: al, Recovered: rec}, &dropMover{subs: []*subsystem.Subsystem{ss}}, vols)
		if err != nil {
			t.Fatal(err)
		}
		return mg, ss
	}
}
