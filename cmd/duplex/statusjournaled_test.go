package main

import (
	"strings"
	"testing"

	"duplex/control"
)

// A primary whose secondary journaled past what it recovers to shows both
// times, each named: the consistency time and the journaled one.
func TestStatusShowsTheJournaledTimeBesideTheConsistencyTime(t *testing.T) {
	var b strings.Builder
	printStatus(&b, control.Status{Session: "s", Role: "primary", ConsistencyTime: "2026-12-03T12:00:00Z",
		JournaledTime: "2026-12-03T12:00:05Z", Link: "connected"})
	out := b.String()
	for _, w := range []string{"consistency-time:2026-12-03T12:00:00Z", "journaled-time:2026-12-03T12:00:05Z", "it recovers to consistency-time"} {
		if !strings.Contains(out, w) {
			t.Errorf("status lacks %q:\n%s", w, out)
		}
	}
	b.Reset()
	printStatus(&b, control.Status{Session: "s", Role: "primary", ConsistencyTime: "2026-12-03T12:00:00Z", Link: "connected"})
	if strings.Contains(b.String(), "journaled-time") {
		t.Errorf("status shows a journaled time where there is none past the consistency time:\n%s", b.String())
	}
}
