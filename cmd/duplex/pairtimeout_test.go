package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPairCommandIsBounded: `duplex pair` against a control address that
// takes the connection and never answers gives up once the status it asks
// first has not come in time, sending nothing, with an error; and a
// --timeout that bounds nothing is a usage error.
func TestPairCommandIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	c := startupSession(dir)
	c.Primary.Control = silentListener(t)
	c.ControlTokenFile = filepath.Join(dir, "token")
	writeFile(t, c.ControlTokenFile, []byte("secret\n"), 0o600)
	cfg := writeSessionConfig(t, dir, c)

	start := time.Now()
	code, out := runDuplex(t, "pair", "suspend", "vol1", "--drain", "--timeout", "1s", "--config", cfg)
	checkFailure(t, code, exitFailure, out, "did not answer its status in time")
	checkFailure(t, code, exitFailure, out, "so nothing was sent")
	t.Logf("gave up after %v: %s", time.Since(start).Round(time.Millisecond), out)

	code, out = runDuplex(t, "pair", "suspend", "vol1", "--drain", "--timeout", "0s", "--config", cfg)
	checkFailure(t, code, exitUsage, out, `--timeout "0s": must be positive`)
}

// TestASuspendsDrainIsBoundByTheTimeout: pair suspend --drain with a
// --timeout shorter than a second, at a primary whose drain does not end,
// fails within it, exit 1, saying the drain did not end within the
// --timeout given, the pair left as it was. Before: the drain was given a
// second whatever --timeout said ("ran out after 1s"), and a drain that
// ended within that second suspended the pair, exit 0; then the error
// quoted the drain's share of the bound, what was left of it once the
// status was asked ("the drain's timeout ran out after 299ms" for
// --timeout 300ms), not what the operator gave.
func TestASuspendsDrainIsBoundByTheTimeout(t *testing.T) {
	for _, tc := range []struct{ timeout, want string }{{"1ns", "--timeout 1ns"}, {"300ms", "--timeout 300ms"}, {"0.3s", "--timeout 300ms"}} {
		for _, which := range []string{"vol1", "--all"} {
			fp, path := pairSession(t, map[string]string{"vol1": "duplex"})
			fp.held = true
			start := time.Now()
			code, out, errs := runCmd("pair", "suspend", which, "--drain", "--timeout", tc.timeout, "--config", path)
			took := time.Since(start)
			want := "the drain did not end within " + tc.want
			if code != exitFailure || !strings.Contains(errs, want) || strings.Contains(errs, "ran out after") || strings.Contains(out, "suspend requested") {
				t.Errorf("pair suspend %s --drain --timeout %s: exit %d, stdout %q, stderr %q; want exit 1 saying %q",
					which, tc.timeout, code, out, errs, want)
			}
			if got := fp.state["vol1"]; got != "duplex" {
				t.Errorf("%s --timeout %s: vol1 is %q after a drain that ran out, want it left duplex", which, tc.timeout, got)
			}
			t.Logf("%s --timeout %s (%v): %s", which, tc.timeout, took.Round(time.Millisecond), strings.TrimSpace(errs))
		}
	}
}
