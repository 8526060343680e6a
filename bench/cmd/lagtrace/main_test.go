package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A group cut before its consistency time is one whose primary's timer
// ran ahead of its clock: the summary says how many, and by how much at
// most, so that their short offsets are not read as a fast step.
func TestTheSummaryCountsGroupsCutBeforeTheirTime(t *testing.T) {
	var lines []string
	for i, cut := range []float64{0.5, -1.5, -0.25, 1} {
		lines = append(lines, fmt.Sprintf(`time=2026-12-06T10:00:00.00%dZ level=DEBUG msg="group applied" component=secondary group=%d `+
			`updates=1 bytes=4096 batch=1 cut_ms=%g room_wait_ms=0 arrived_ms=2 formed_ms=2.1 journal_ms=2.2 synced_ms=5 apply_ms=5.1 applied_ms=6`,
			i, i+1, cut))
	}
	gs, cks, err := read(strings.NewReader(strings.Join(lines, "\n")), time.Time{}, time.Time{})
	if err != nil || len(gs) != 4 {
		t.Fatalf("read %d groups: %v", len(gs), err)
	}
	var out strings.Builder
	report(&out, gs, cks, 40)
	if !strings.Contains(out.String(), "2 of 4 groups were cut before their consistency time") || !strings.Contains(out.String(), "at most 1.5 ms") {
		t.Fatalf("the summary does not count the 2 groups cut before their time, by 1.5 ms at most:\n%s", out.String())
	}
	out.Reset()
	report(&out, gs[:1], cks, 40)
	if strings.Contains(out.String(), "cut before") {
		t.Fatalf("the summary of a group cut after its time says some were cut before:\n%s", out.String())
	}
}
