package main

import (
	"strings"
	"testing"
)

// TestAFlagWithoutItsValueSaysSo: a flag that takes a value, followed by
// another of the command's flags instead, is refused naming both and the
// value it wants. Before, it took the next flag as its value, and the
// error spoke of something else: "--addr --config F" made F an unexpected
// argument, "--copy --config F" said rate takes no volume, "--config
// --all" said VOLUME or --all is required.
func TestAFlagWithoutItsValueSaysSo(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		flag, next string
	}{
		{[]string{"pair", "suspend", "vol1", "--addr", "--config", "x.toml"}, "--addr", "--config"},
		{[]string{"pair", "suspend", "vol1", "--config", "--addr", "127.0.0.1:7401"}, "--config", "--addr"},
		{[]string{"pair", "add", "--config", "--all"}, "--config", "--all"},
		{[]string{"pair", "rate", "--copy", "--config", "x.toml"}, "--copy", "--config"},
		{[]string{"pair", "suspend", "vol1", "--config", "x.toml", "--timeout", "--drain"}, "--timeout", "--drain"},
		{[]string{"status", "--addr", "--json"}, "--addr", "--json"},
		{[]string{"pair", "suspend", "vol1", "--config", "x.toml", "--ca", "-addr=127.0.0.1:7401"}, "--ca", "-addr=127.0.0.1:7401"},
		// Before the operation, the flag took the operation's name.
		{[]string{"pair", "--config", "suspend", "vol1"}, "--config", "suspend"},
		{[]string{"pair", "--timeout", "rate"}, "--timeout", "rate"},
	} {
		code, out, errs := runCmd(tc.args...)
		want := tc.flag + " needs a value"
		if code != exitUsage || !strings.Contains(errs, want) || !strings.Contains(errs, tc.next) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want a usage error saying %q, naming %s", strings.Join(tc.args, " "), code, out, errs, want, tc.next)
		}
	}
	// A value that begins with "-" and names no flag is a value: a time
	// before now, a negative rate refused for what it is.
	if code, _, errs := runCmd("pair", "rate", "--link", "-5", "--config", "x.toml"); code != exitUsage || !strings.Contains(errs, "must not be negative") {
		t.Errorf("pair rate --link -5: exit %d, stderr %q; want it refused as negative", code, errs)
	}
}

// TestAnEmptyAddrIsRefused: --addr or --ca given empty (a script's --addr
// "$SITE" with SITE unset) is a usage error, nothing sent: taken as left
// out, the operation went to the session's primary, which may not be the
// site the operator named, and status asked the config's sites. Before,
// pair suspend vol1 --addr "" suspended vol1 at the config's primary,
// exit 0, and so did --ca "" with --addr.
func TestAnEmptyAddrIsRefused(t *testing.T) {
	fp, path := pairSession(t, map[string]string{"vol1": "duplex"})
	for _, args := range [][]string{
		{"pair", "suspend", "vol1", "--config", path, "--addr", ""},
		{"pair", "rate", "--config", path, "--addr="},
		{"pair", "suspend", "vol1", "--config", path, "--addr", "127.0.0.1:2", "--ca", ""},
		{"status", "--config", path, "--addr", ""},
		{"status", "--addr", ""},
	} {
		code, out, errs := runCmd(args...)
		if code != exitUsage || !strings.Contains(errs, ": empty") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want a usage error saying the flag is empty", args, code, out, errs)
		}
	}
	if len(fp.calls) != 0 {
		t.Errorf("calls at the config's primary: %v", fp.calls)
	}
}
