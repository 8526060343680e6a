package main

import (
	"path/filepath"
	"strings"
	"testing"

	"duplex/internal/testenv"
)

// TestStatusAtAnNBDPortSaysSo: status --addr at an NBD export's port is
// the address mistaken, said plainly, with where the control address is
// found, and exits 2; a config whose control address is an NBD port has
// the key named. Before, exit 1 with 'malformed HTTP response
// "NBDMAGICIHAVEOPT\x00\x03"'.
func TestStatusAtAnNBDPortSaysSo(t *testing.T) {
	nbd := testenv.NBDGreeter(t)
	code, out, errs := runCmd("status", "--addr", nbd)
	for _, want := range []string{"--addr " + nbd, "NBD export", "not a control address", "primary.control", "secondary.control"} {
		if code != exitUsage || !strings.Contains(errs, want) || strings.Contains(errs, "malformed") {
			t.Errorf("status --addr %s: exit %d, stdout %q, stderr %q; want exit %d saying %q", nbd, code, out, errs, exitUsage, want)
		}
	}
	dir := t.TempDir()
	c := startupSession(dir)
	c.Primary.Control, c.Secondary.Control = nbd, ""
	path := writeSessionConfig(t, dir, c)
	code, out, errs = runCmd("status", "--config", path)
	for _, want := range []string{"NBD export", "not a control address", "primary.control", filepath.Base(path)} {
		if code != exitFailure || !strings.Contains(errs, want) || strings.Contains(errs, "malformed") {
			t.Errorf("status --config (primary.control %s): exit %d, stdout %q, stderr %q; want exit %d saying %q", nbd, code, out, errs, exitFailure, want)
		}
	}
}
