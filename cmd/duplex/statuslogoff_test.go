package main

import (
	"strings"
	"testing"

	"duplex/control"
)

// The primary's status says when its run goes without the activity log,
// and why; nothing while the log is kept.
func TestStatusShowsActivityLogOff(t *testing.T) {
	for _, tc := range []struct {
		off, want string
	}{{"could not be written (EIO): a full resync", "activity-log:off (could not be written (EIO): a full resync)"}, {"", ""}} {
		addr := serveStatus(t, control.Status{Session: "s", Role: "primary", Link: "connected", ActivityLogOff: tc.off})
		code, out, errs := runCmd("status", "--addr", addr)
		if code != exitOK || !strings.Contains(out, tc.want) || (tc.want == "" && strings.Contains(out, "activity-log")) {
			t.Errorf("exit %d, stderr %q; human status, the log off %q, want %q:\n%s", code, errs, tc.off, tc.want, out)
		}
	}
}

// The primary's status names a volume whose activity-log flush has been
// running for a while (its disk may have stopped answering).
func TestStatusShowsAHungActivityLogFlush(t *testing.T) {
	addr := serveStatus(t, control.Status{Session: "s", Role: "primary", Link: "connected",
		ActivityLogFlushSeconds: map[string]float64{"vol1": 42.4}})
	code, out, errs := runCmd("status", "--addr", addr)
	if want := "activity-log:flushing vol1 for 42s"; code != exitOK || !strings.Contains(out, want) {
		t.Errorf("exit %d, stderr %q; human status, want %q:\n%s", code, errs, want, out)
	}
}
