// Package testenv decides what a test does on a machine that lacks a tool
// or a privilege it needs: the loop devices that stand for the block devices
// of the primary and secondary storage subsystems, the NBD clients users
// write through, the browser that shows the status page. Tests only.
//
// On a developer's machine such a test skips, saying what to install. In
// CI (.ci/run sets DUPLEX_CI) it fails instead: CI installs every tool and
// runs as root, so a test that would skip there is one CI never ran, and a
// result that counts on it (block devices replicate, the status page draws
// its charts) would not be shown.
//
// It also runs those tools the same way wherever a test drives them:
// NeedTool, RunTool, and NBDInfo for what nbdinfo says of a server.
package testenv

import (
	"os"
	"testing"
)

// Missing skips t, saying why (a format and its args), or fails it where
// DUPLEX_CI is set.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("DUPLEX_CI") != "" {
		t.Fatalf(format+" (DUPLEX_CI is set: CI runs this test, never skips it)", args...)
	}
	t.Skipf(format, args...)
}
