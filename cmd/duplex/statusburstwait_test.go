package main

import (
	"strings"
	"testing"

	"duplex/control"
)

// The primary's status says how long a burst of large writes may wait
// unsent, "off" when it never does.
func TestStatusShowsBurstWait(t *testing.T) {
	for _, tc := range []struct {
		seconds float64
		want    string
	}{{1, "burst-wait:1s"}, {0.25, "burst-wait:250ms"}, {0, "burst-wait:off"}} {
		addr := serveStatus(t, control.Status{Session: "s", Role: "primary", Link: "connected", BurstWaitSeconds: &tc.seconds})
		code, out, errs := runCmd("status", "--addr", addr)
		if code != exitOK || !strings.Contains(out, tc.want) {
			t.Errorf("exit %d, stderr %q; human status lacks %s:\n%s", code, errs, tc.want, out)
		}
	}
}
