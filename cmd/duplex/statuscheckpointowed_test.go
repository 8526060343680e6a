package main

import (
	"bytes"
	"strings"
	"testing"

	"duplex/control"
)

// A secondary whose checkpoint owes the state file's write or the
// journal's release says so under CHECKPOINT-OWED, as its JSON does in
// checkpoint_owed; nothing while none is owed.
func TestStatusShowsWhatACheckpointOwes(t *testing.T) {
	const owed = "the journal's release of its applied segments through group 5 has failed since 2026-12-06T12:00:00Z (61 tries, ...)"
	var b bytes.Buffer
	printStatus(&b, control.Status{Session: "s", Role: "secondary", Link: "connected", CheckpointOwed: owed})
	if want := "CHECKPOINT-OWED: " + owed; !strings.Contains(b.String(), want) {
		t.Errorf("human status, want %q:\n%s", want, b.String())
	}
	b.Reset()
	printStatus(&b, control.Status{Session: "s", Role: "secondary", Link: "connected"})
	if strings.Contains(b.String(), "CHECKPOINT-OWED") {
		t.Errorf("human status of a secondary that owes nothing says it does:\n%s", b.String())
	}
}
