package main

import (
	"strings"
	"sync/atomic"
	"testing"

	"duplex/control"
)

// TestARefusalOfAConnectedPrimaryReadsAsTheOthers: recover and promote
// at a running secondary that a primary replicates to are refused, exit
// 1, as the command's other refusals read: the command's name first, what
// to do after the colon in lower case, --force as the command line that
// takes the secondary over; the secondary is not fenced. Before: "duplex:
// a primary (...) is connected to the running secondary: it is still
// replicating. Stop the primary, or use --force".
func TestARefusalOfAConnectedPrimaryReadsAsTheOthers(t *testing.T) {
	var fenced atomic.Bool
	path := serveSecondary(t, &control.Server{
		Status: func() control.Status {
			return control.Status{Session: "startup", Role: "secondary", Link: "connected", Peer: "192.0.2.7:40000"}
		},
		Fence: func() (int64, error) { fenced.Store(true); return 1, nil }})
	for _, cmd := range []string{"recover", "promote"} {
		code, out, errs := runCmd(cmd, "--config", path)
		for _, want := range []string{"duplex: " + cmd + ": a primary (192.0.2.7:40000) is connected to the running secondary",
			"stop the primary, then run duplex " + cmd + " again", "duplex " + cmd + " --force"} {
			if code != exitFailure || !strings.Contains(errs, want) {
				t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit 1 saying %q", cmd, code, out, errs, want)
			}
		}
		if strings.Contains(errs, ". Stop") {
			t.Errorf("duplex %s: %q: want what to do after the colon, in lower case", cmd, errs)
		}
	}
	if fenced.Load() {
		t.Error("a refused command fenced the secondary")
	}
}
