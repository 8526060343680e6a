package main

import (
	"strings"
	"testing"
)

// TestDashDashBeforeTheCommandIsSaid: "--" before the command is not
// called a flag: the error says what "--" does (it ends a command's flags,
// after its name) and gives the command line without it. Before: duplex --
// status said "\"--\" before the command: the command comes first, then
// its flags: duplex status --", a line whose "--" then ends status's flags.
func TestDashDashBeforeTheCommandIsSaid(t *testing.T) {
	for _, tc := range []struct {
		args []string
		line string // the command line suggested, "" for none
	}{
		{[]string{"--", "status"}, "duplex status"},
		{[]string{"--", "status", "--json"}, "duplex status --json"},
		{[]string{"--json", "--", "status"}, "duplex status --json"},
		{[]string{"--"}, ""},
	} {
		code, out, errs := runCmd(tc.args...)
		cmdline := "duplex " + strings.Join(tc.args, " ")
		if code != exitUsage || strings.Count(errs, "\n") != 1 || out != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d, one line", cmdline, code, out, errs, exitUsage)
			continue
		}
		if !strings.Contains(errs, `"--" ends a command's flags`) {
			t.Errorf("%s: %q; want it said what \"--\" does", cmdline, errs)
		}
		if tc.line != "" && !strings.HasSuffix(strings.TrimSpace(errs), ": "+tc.line) {
			t.Errorf("%s: %q; want it to end with the command line %q", cmdline, errs, tc.line)
		}
		if tc.line == "" && !strings.Contains(errs, "duplex help lists the commands") {
			t.Errorf("%s: %q; want it to point at duplex help", cmdline, errs)
		}
	}
}
