package main

import (
	"encoding/json"
	"strings"
	"testing"

	"duplex/control"
)

// TestStatusOfAPendingPairSaysItsPlannedCopy: a pending pair's line said
// copied:<the volume's size less what is left of the copy>, so a 1 MiB
// resync of a 4 MiB volume read copied:3.0 MiB at its start and
// copied:4.0 MiB once read whole, its end awaiting the secondary: neither
// the plan nor the stage showed. The line now says what is left of the
// planned copy, or that it was read and its end awaits the secondary; the
// other pairs' lines are as they were.
func TestStatusOfAPendingPairSaysItsPlannedCopy(t *testing.T) {
	// As the control API of a primary sends it.
	const body = `{"session":"s","role":"primary","link":"disconnected","volumes":[
		{"name":"vol1","subsystem":"ss1","state":"pending","size_bytes":4194304,"copied_bytes":3407872,"copy_bytes":1048576,"copy_left_bytes":786432},
		{"name":"vol2","subsystem":"ss1","state":"pending","size_bytes":4194304,"copied_bytes":4194304,"copy_bytes":1048576,"copy_left_bytes":0,"copy_end_awaits_secondary":true},
		{"name":"vol3","subsystem":"ss1","state":"duplex","size_bytes":4194304,"copied_bytes":4194304},
		{"name":"vol4","subsystem":"ss1","state":"pending","size_bytes":4194304,"copied_bytes":4194304,"copy_bytes":0,"copy_left_bytes":0}]}`
	var st control.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd("status", "--addr", serveStatus(t, st))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"vol1 subsystem:ss1 state:pending size:4.0 MiB copy:768.0 KiB left of 1.0 MiB\n",
		"vol2 subsystem:ss1 state:pending size:4.0 MiB copy:1.0 MiB read, its end awaits the secondary\n",
		"vol3 subsystem:ss1 state:duplex size:4.0 MiB\n",
		// A resume with nothing changed, its end not stamped yet (put
		// off for the timer's lease): a plan of none, not a daemon from
		// before copy_bytes.
		"vol4 subsystem:ss1 state:pending size:4.0 MiB copy:0 B left of 0 B\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "copied:") {
		t.Errorf("status still says copied: for a pending pair:\n%s", out)
	}
}
