package main

import (
	"strings"
	"testing"
)

// TestHelpCommandPrintsTheCommandsUsage: `duplex help pair` (as git and go
// take `help CMD`) printed the general usage, leaving out the command's
// flags; it prints what `duplex pair -h` does, and `duplex help pair add`
// what `duplex pair add -h` does. A command that does not exist is bad
// usage.
func TestHelpCommandPrintsTheCommandsUsage(t *testing.T) {
	for _, cmd := range [][]string{{"pair"}, {"status"}, {"pair", "add"}, {"primary"}} {
		code, got, errs := runCmd(append([]string{"help"}, cmd...)...)
		_, want, _ := runCmd(append(cmd, "-h")...)
		if name := strings.Join(cmd, " "); code != exitOK || got != want {
			t.Errorf("duplex help %s: exit %d, printed\n%s%s\nwant what duplex %s -h prints:\n%s", name, code, got, errs, name, want)
		}
	}
	if code, _, errs := runCmd("help", "nosuch"); code != exitUsage || !strings.Contains(errs, "nosuch") {
		t.Errorf("duplex help nosuch: exit %d (%s), want %d naming it", code, strings.TrimSpace(errs), exitUsage)
	}
}
