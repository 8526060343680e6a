package main

import (
	"strings"
	"testing"

	"duplex/control"
)

// A promoted site that replicates nowhere says so in the human status as
// in its JSON (no_pairs), with what brings replication back: its role
// alone (primary, link suspended) reads as a primary whose pairs are all
// suspended. Before, the text said nothing of it.
func TestStatusShowsNoPairs(t *testing.T) {
	const why = "this promoted site replicates nowhere and holds no pairs: set primary.listen and primary.journal"
	addr := serveStatus(t, control.Status{Session: "s", Role: "primary", Link: "suspended", PromotedAt: "2026-12-06T01:00:00Z", NoPairs: why})
	code, out, errs := runCmd("status", "--addr", addr)
	if want := "NO-PAIRS: " + why; code != exitOK || !strings.Contains(out, want) {
		t.Errorf("exit %d, stderr %q; human status, want %q:\n%s", code, errs, want, out)
	}
	addr = serveStatus(t, control.Status{Session: "s", Role: "primary", Link: "connected"})
	if code, out, errs := runCmd("status", "--addr", addr); code != exitOK || strings.Contains(out, "NO-PAIRS") {
		t.Errorf("exit %d, stderr %q; human status of a primary with pairs says NO-PAIRS:\n%s", code, errs, out)
	}
}
