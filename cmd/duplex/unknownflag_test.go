package main

import (
	"strings"
	"testing"
)

// TestUnknownFlagNamedAsTyped: a flag a command does not have is named as
// the operator typed it, two dashes as the usage spells flags (or one, if
// typed so), without its value. Before, the flag package's words, with
// one dash whatever was typed: "flag provided but not defined: -json2".
func TestUnknownFlagNamedAsTyped(t *testing.T) {
	for _, cmd := range everyCommand() {
		path := strings.Join(cmd, " ")
		for _, tc := range []struct{ flag, want string }{
			{"--json2", "unknown flag --json2"},
			{"--json2=yes", "unknown flag --json2 "},
			{"-json2", "unknown flag -json2"},
		} {
			args := append(append([]string{}, cmd...), "vol1", tc.flag)
			code, _, errs := runCmd(args...)
			if code != exitUsage || !strings.Contains(errs, path+": "+tc.want) || strings.Contains(errs, "not defined") {
				t.Errorf("duplex %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(args, " "), code, errs, path+": "+tc.want)
			}
		}
	}
}
