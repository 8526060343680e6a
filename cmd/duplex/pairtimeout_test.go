package main

import (
	"path/filepath"
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
