package main

import (
	"bytes"
	"strings"
	"testing"

	"duplex/control"
)

// A secondary stopped on a disk fault says, under STOPPED, that it
// retries by itself, which attempt comes next and when; nothing once it
// runs.
func TestStatusShowsTheDiskRetry(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, control.Status{Session: "s", Role: "secondary", Link: "disconnected", Stopped: "journal group 5: fsync: input/output error",
		DiskRetry: &control.DiskRetry{Attempt: 3, Error: "journal group 5: fsync: input/output error", Next: "2026-12-05T10:00:04Z"}})
	if want := "RETRYING: attempt 3 at 2026-12-05T10:00:04Z"; !strings.Contains(b.String(), want) {
		t.Errorf("human status, want %q:\n%s", want, b.String())
	}
	b.Reset()
	printStatus(&b, control.Status{Session: "s", Role: "secondary", Link: "connected"})
	if strings.Contains(b.String(), "RETRYING") {
		t.Errorf("human status of a running secondary says it retries:\n%s", b.String())
	}
}
