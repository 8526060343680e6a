package main

import (
	"bytes"
	"strings"
	"testing"

	"duplex/control"
)

// A site that starts says so, and what its start waits for and how long,
// rather than a consistency time and volumes it has not read yet.
func TestStatusShowsTheStart(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, control.Status{Session: "s", Role: "primary", Link: "disconnected", Starting: &control.StartingStatus{
		Since: "2026-12-05T10:00:00Z", Step: "/var/lib/duplex/s.primary/timer.json", StepSince: "2026-12-05T10:00:01Z", StepSeconds: 61.5}})
	for _, want := range []string{"STARTING since 2026-12-05T10:00:00Z", "waiting for /var/lib/duplex/s.primary/timer.json for 1m1.5s (since 2026-12-05T10:00:01Z)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("human status, want %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "consistency-time") {
		t.Errorf("human status of a starting site says a consistency time:\n%s", b.String())
	}
}
