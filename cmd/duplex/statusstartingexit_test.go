package main

import (
	"strings"
	"testing"

	"duplex/control"
)

// `duplex status` exits 0 once every site it asks runs, whatever the
// state of its pairs and link (suspended, lagging, disconnected: the
// output says), and 1 when one does not answer, or answers that it
// starts: its state is not read yet, so its status says nothing of its
// volumes, and a script that reads exit 0 as "the site runs, and its
// status is its state" (as it could before a starting site answered)
// would take a site without volumes for one with nothing to do. What
// every site that answered said is printed all the same.
func TestStatusExitsNonZeroForAStartingSite(t *testing.T) {
	starting := serveStatus(t, control.Status{Session: "s", Role: "secondary", Link: "disconnected",
		Starting: &control.StartingStatus{Since: "2026-12-05T10:00:00Z", Step: "/var/lib/duplex/secondary/journal", StepSince: "2026-12-05T10:00:01Z", StepSeconds: 61}})
	running := serveStatus(t, control.Status{Session: "s", Role: "primary", Link: "disconnected",
		Volumes: []control.VolumeStatus{{Name: "vol1", State: "suspended"}}})

	for _, args := range [][]string{{"--addr", starting}, {"--addr", starting, "--json"}} {
		code, out, errs := runCmd(append([]string{"status"}, args...)...)
		if code != exitFailure || !strings.Contains(errs, "is starting") || !strings.Contains(errs, "/var/lib/duplex/secondary/journal") {
			t.Errorf("status %v of a starting site: exit %d, stderr %q; want exit 1 saying it starts and what it waits for", args, code, errs)
		}
		if !strings.Contains(out, "STARTING since") && !strings.Contains(out, `"starting"`) {
			t.Errorf("status %v of a starting site does not print its status:\n%s", args, out)
		}
	}

	dir := t.TempDir()
	cfg := startupSession(dir)
	cfg.Session = "s"
	cfg.Primary.Control, cfg.Secondary.Control = running, starting
	path := writeSessionConfig(t, dir, cfg)
	code, out, errs := runCmd("status", "--config", path)
	if code != exitFailure || !strings.Contains(errs, "secondary at "+starting+" is starting") || strings.Contains(errs, running) {
		t.Errorf("status of a running primary and a starting secondary: exit %d, stderr %q; want exit 1 naming the secondary alone", code, errs)
	}
	if !strings.Contains(out, "s role:primary") || !strings.Contains(out, "s role:secondary") {
		t.Errorf("status of a running primary and a starting secondary does not print both:\n%s", out)
	}

	if code, out, errs := runCmd("status", "--addr", running); code != exitOK || !strings.Contains(out, "suspended") {
		t.Errorf("status of a running primary with a suspended pair: exit %d, stdout %q, stderr %q; want exit 0 with its state", code, out, errs)
	}
}
