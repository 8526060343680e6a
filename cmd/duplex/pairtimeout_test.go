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
	checkFailure(t, code, exitUsage, out, "--timeout must be positive")
}

// TestASuspendsDrainIsBoundByTheTimeout: pair suspend --drain with a
// --timeout shorter than a second, at a primary whose drain does not end,
// fails within it, exit 1, saying the drain's timeout ran out after what
// the command allowed, the pair left as it was. Before: the drain was
// given a second whatever --timeout said ("ran out after 1s"), and a
// drain that ended within that second suspended the pair, exit 0.
func TestASuspendsDrainIsBoundByTheTimeout(t *testing.T) {
	for _, timeout := range []string{"1ns", "300ms"} {
		fp, path := pairSession(t, map[string]string{"vol1": "duplex"})
		fp.held = true
		code, out, errs := runCmd("pair", "suspend", "vol1", "--drain", "--timeout", timeout, "--config", path)
		_, after, _ := strings.Cut(errs, "timeout ran out after ")
		ran, err := time.ParseDuration(strings.TrimSpace(after))
		if allowed, _ := time.ParseDuration(timeout); code != exitFailure || err != nil || ran > allowed || strings.Contains(out, "suspend requested") {
			t.Errorf("pair suspend --drain --timeout %s: exit %d, stdout %q, stderr %q; want exit 1, the drain's timeout run out after at most %s",
				timeout, code, out, errs, timeout)
		}
		if got := fp.state["vol1"]; got != "duplex" {
			t.Errorf("--timeout %s: vol1 is %q after a drain that ran out, want it left duplex", timeout, got)
		}
	}
}
