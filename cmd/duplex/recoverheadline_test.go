package main

import (
	"bytes"
	"strings"
	"testing"

	"duplex/control"
	"duplex/recordset"
)

// TestRecoverHeadlineSaysWhetherAnyVolumeIsConsistent: recover's first line
// is what an operator reads of it. Groups applied to volumes none of which
// holds a consistent copy (each joined while its pair was duplex, never
// copied whole) must not be headed "consistent as of T": the volumes'
// lines below say why not, and the headline must agree with them.
func TestRecoverHeadlineSaysWhetherAnyVolumeIsConsistent(t *testing.T) {
	path, _ := secondaryBacklog(t, 2, func(n uint64) recordset.Update {
		return recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: 0, Length: 4096, Data: bytes.Repeat([]byte{byte(n)}, 4096)}
	})

	code, out, errs := runCmd("recover", "--config", path, "--log-level", "error")
	t.Logf("duplex recover: exit %d, stdout %q, stderr %q", code, out, errs)
	if code != exitOK {
		t.Fatalf("duplex recover: exit %d", code)
	}
	first, _, _ := strings.Cut(out, "\n")
	if !strings.Contains(first, "(group 2)") {
		t.Errorf("first line %q: want the applied group in it, which scripts read", first)
	}
	if strings.HasPrefix(first, "consistent") {
		t.Errorf("first line %q, with no volume consistent", first)
	}
	if !strings.Contains(first, "no volume is consistent") {
		t.Errorf("first line %q does not say that no volume is consistent", first)
	}
}

// TestPrintRecoveredHeadline: the first line agrees with the volumes'.
func TestPrintRecoveredHeadline(t *testing.T) {
	g := uint64(7)
	at, earlier := "2026-12-02T15:00:00Z", "2026-12-02T14:00:00Z"
	ok := control.VolumeStatus{Name: "a", Subsystem: "ss1", ConsistencyTime: at, Consistency: "consistent as of " + at + " (group 7)"}
	suspended := control.VolumeStatus{Name: "b", Subsystem: "ss1", ConsistencyTime: earlier, Consistency: "consistent as of its suspension time " + earlier}
	not := control.VolumeStatus{Name: "c", Subsystem: "ss1", Consistency: "not consistent: initial copy not complete"}
	old := control.VolumeStatus{Name: "d", Subsystem: "ss1"} // a status without the per-volume fields
	for _, tc := range []struct {
		name string
		vols []control.VolumeStatus
		want string
	}{
		{"all", []control.VolumeStatus{ok, old}, "consistent as of " + at + " (group 7)"},
		{"one as of its suspension", []control.VolumeStatus{ok, suspended}, "consistent as of " + at + " (group 7), each volume as its line below says"},
		{"some", []control.VolumeStatus{ok, not}, "1 of 2 volumes consistent"},
		{"none", []control.VolumeStatus{not}, "no volume is consistent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			printRecovered(&b, control.Status{ConsistencyTime: at, Group: &g, Volumes: tc.vols})
			first, _, _ := strings.Cut(b.String(), "\n")
			if !strings.HasPrefix(first, tc.want) {
				t.Errorf("first line %q, want it to begin %q", first, tc.want)
			}
			// What scripts read of it: the session's consistency time and
			// the applied group.
			if !strings.Contains(first, "consistent as of "+at+" (group 7)") {
				t.Errorf("first line %q does not hold %q", first, "consistent as of "+at+" (group 7)")
			}
		})
	}
}
