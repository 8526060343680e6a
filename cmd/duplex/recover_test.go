package main

import (
	"strings"
	"testing"
)

// TestRecoverStoppedSecondary: recover at a secondary that ran but never
// applied a group says so, its flags in either order, and a missing config is one
// line and exit 2.
func TestRecoverStoppedSecondary(t *testing.T) {
	dir := t.TempDir()
	c := startupSession(dir)
	c.Secondary.Control = ""
	path := writeSessionConfig(t, dir, c)
	firstStart(t, path)
	for _, args := range [][]string{
		{"recover", "--config", path, "--log-level", "error"},
		{"recover", "--log-level=error", "--config=" + path},
	} {
		code, out, errs := runCmd(args...)
		if code != exitOK || !strings.Contains(out, "no consistency group was ever applied") {
			t.Errorf("duplex %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errs)
		}
	}
	code, out, errs := runCmd("recover", "--config", dir+"/none.toml")
	if code != exitUsage || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "none.toml") {
		t.Errorf("recover with no config file: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
