package main

import (
	"strings"
	"testing"
)

// A member recovered or promoted at its group's time is said to be at it
// only if its volumes hold its writes through it; one added at the
// others' time past what its secondary journaled is told the time they
// hold, and why the rest are not there.
func TestPrintCoupledTimeSaysWhichTimeTheVolumesHold(t *testing.T) {
	var at, behind strings.Builder
	printCoupledTime(&at, "recovered to", "g", "T2", "T2")
	printCoupledTime(&behind, "promoted at", "g", "T2", "T1")
	if got := at.String(); !strings.Contains(got, "coupled group g: recovered to the group's time T2, which every member reaches") || strings.Contains(got, "only through") {
		t.Errorf("at the group's time: %q", got)
	}
	got := behind.String()
	for _, want := range []string{"promoted at the group's time T2", "hold its writes only through T1", "duplex couple add", "before it was coupled"} {
		if !strings.Contains(got, want) {
			t.Errorf("behind the group's time: %q lacks %q", got, want)
		}
	}
}
