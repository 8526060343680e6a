package pair

import (
	"errors"
	"testing"
)

// TestACopyThatKeepsFailingSaysSinceWhen: every copy of pair a fails with
// an error that is not the volume's. A monitor alerting on a copy that
// never succeeds needs how long it has failed and how often: a's
// CopyFailingSince is the time of its first failure in a row, kept across
// the failures after it, the manager counts each failure, and once a copy
// of it goes on again the time is cleared (the count is not: it counts
// every failure since the start).
func TestACopyThatKeepsFailingSaysSinceWhen(t *testing.T) {
	r := newRig(t, 4*twinRegion, 8<<20, "a", "b")
	clock := r.freezeClock()
	first := clock.Now()
	r.refuseCopiesOf("a", errors.New("connection reset by peer"))
	r.steps(10)
	if got := r.pair("a").CopyFailingSince; !got.Equal(first) {
		t.Fatalf("pair a, its copy failed once: failing since %v, want %v", got, first)
	}
	if got := r.mg.CopyFailures(); got != 1 {
		t.Fatalf("%d copy failures counted, want 1", got)
	}
	for range 3 {
		clock.by(copyRetryLast)
		r.steps(1)
	}
	if got := r.pair("a").CopyFailingSince; !got.Equal(first) {
		t.Fatalf("pair a, its copy failing 4 times in a row: failing since %v, want the first failure's %v", got, first)
	}
	if got := r.mg.CopyFailures(); got != 4 {
		t.Fatalf("%d copy failures counted, want 4", got)
	}
	if got := r.pair("b").CopyFailingSince; !got.IsZero() {
		t.Fatalf("pair b, its copy never failing: failing since %v", got)
	}
	r.refuseCopiesOf("", nil)
	clock.by(copyRetryLast)
	r.settle()
	if a := r.pair("a"); a.State != Duplex || !a.CopyFailingSince.IsZero() {
		t.Fatalf("pair a, its copy done: %+v, want duplex and failing since no time", a)
	}
	if got := r.mg.CopyFailures(); got != 4 {
		t.Fatalf("%d copy failures counted after the copy went on, want still 4", got)
	}
}
