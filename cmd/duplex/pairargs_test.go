package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCAFileMistakesAreUsageErrors: --ca names a file on the command line;
// one missing, unreadable as a file or holding no PEM certificate is the
// command called the wrong way, as a bad flag value is: exit 2, naming the
// file, before anything is sent. Before: exit 1, as for a site that fails.
func TestCAFileMistakesAreUsageErrors(t *testing.T) {
	_, path := pairSession(t, map[string]string{"vol1": "duplex"})
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	writeFile(t, notPEM, []byte("not a certificate\n"), 0o644)
	for _, ca := range []string{filepath.Join(dir, "missing.pem"), dir, notPEM} {
		for _, args := range [][]string{
			{"status", "--addr", "https://127.0.0.1:7401", "--ca", ca},
			{"pair", "suspend", "vol1", "--config", path, "--addr", "https://127.0.0.1:7401", "--ca", ca},
		} {
			code, out, errs := runCmd(args...)
			if code != exitUsage || !strings.Contains(errs, ca) || !strings.Contains(errs, "--ca") {
				t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit %d naming --ca and %s", strings.Join(args, " "), code, out, errs, exitUsage, ca)
			}
		}
	}
}

// TestFlagsAfterTheDoubleDashAreArguments: "--" ends the flags, so what
// follows is taken as arguments, a flag's name too. A command given one of
// its flags there says so and where the flags go, rather than take the
// flag for the VOLUME and refuse its value as an argument too many
// (`pair suspend -- --config x` said: unexpected argument "x"). Arguments
// after "--" still work as such.
func TestFlagsAfterTheDoubleDashAreArguments(t *testing.T) {
	fp, path := pairSession(t, map[string]string{"vol1": "duplex"})
	for _, args := range [][]string{
		{"pair", "suspend", "--", "--config", "x"},
		{"pair", "suspend", "vol1", "--", "--config=" + path},
		{"status", "--", "--json"},
		{"recover", "--", "--config", path},
	} {
		code, out, errs := runCmd(args...)
		flagName, _, _ := strings.Cut(args[slices.Index(args, "--")+1], "=")
		if code != exitUsage || !strings.Contains(errs, `"`+flagName) || !strings.Contains(errs, `"--" ends the flags`) {
			t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit %d saying that %s after \"--\" is an argument, not a flag",
				strings.Join(args, " "), code, out, errs, exitUsage, flagName)
		}
	}
	code, out, errs := runCmd("pair", "suspend", "--config", path, "--", "vol1")
	if code != exitOK || fp.state["vol1"] != "suspended" {
		t.Errorf("pair suspend --config F -- vol1: exit %d, stdout %q, stderr %q; want vol1 suspended", code, out, errs)
	}
}

// TestAddrWithAPortNoneListensOnIsAUsageError: --addr with a port out of
// range, or 0, or a service's name, is refused as a usage error naming
// it, before anything is sent. Before: exit 1 from the dial ("invalid
// port") or the request's URL ("invalid port ":http" after host"), read
// as the site's failure.
func TestAddrWithAPortNoneListensOnIsAUsageError(t *testing.T) {
	_, path := pairSession(t, map[string]string{"vol1": "duplex"})
	for _, args := range [][]string{
		{"status", "--addr", "127.0.0.1:99999"},
		{"status", "--addr", "http://127.0.0.1:0"},
		{"status", "--addr", "127.0.0.1:http"},
		{"pair", "suspend", "vol1", "--config", path, "--addr", "127.0.0.1:99999"},
	} {
		code, out, errs := runCmd(args...)
		if code != exitUsage || !strings.Contains(errs, "--addr") || !strings.Contains(errs, "want 1 to 65535") {
			t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit %d, the port refused", strings.Join(args, " "), code, out, errs, exitUsage)
		}
	}
}

// TestABadFlagValueSaysWhatIsWanted: a duration or a boolean flag given a
// value it cannot take is refused naming the flag as the usage spells it
// and what it takes, not with the flag package's "invalid value ... for
// flag -timeout: parse error".
func TestABadFlagValueSaysWhatIsWanted(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"pair", "suspend", "vol1", "--config", "F", "--timeout", "abc"}, []string{`--timeout "abc"`, "a duration such as 30s"}},
		{[]string{"pair", "suspend", "vol1", "--config", "F", "--timeout", "99999999h"}, []string{`--timeout "99999999h"`, "a duration such as 30s"}},
		{[]string{"recover", "--config", "F", "--timeout=5"}, []string{`--timeout "5"`, "a duration such as 30s"}},
		{[]string{"status", "--addr", "127.0.0.1:7401", "--json=maybe"}, []string{`--json "maybe"`, "true or false"}},
		// A flag that says itself what it takes keeps its words, under
		// the flag's name as the usage spells it.
		{[]string{"demo", "--port-base", "abc"}, []string{`--port-base "abc": not a port number`}},
		{[]string{"primary", "--config", "F", "--overwrite-secondary", "abc"}, []string{`--overwrite-secondary "abc": want the secondary's data generation`}},
	} {
		code, out, errs := runCmd(tc.args...)
		ok := code == exitUsage && !strings.Contains(errs, "parse error")
		for _, w := range tc.want {
			ok = ok && strings.Contains(errs, w)
		}
		if !ok {
			t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit %d saying %q", strings.Join(tc.args, " "), code, out, errs, exitUsage, tc.want)
		}
	}
}

// TestAFlagAfterTheDoubleDashBeforeTheOperation: "--" before a pair
// operation's name ends the flags there too: a flag after it is refused
// saying so, where flags go and that the operation comes first. Before:
// unknown operation "--config", as if a flag were an operation's name.
func TestAFlagAfterTheDoubleDashBeforeTheOperation(t *testing.T) {
	for _, args := range [][]string{
		{"pair", "--", "--config", "x"},
		{"pair", "--", "--all"},
		{"pair", "--", "-h"},
		{"drill", "--", "--config", "x"},
		{"couple", "--", "--config", "x"},
	} {
		code, out, errs := runCmd(args...)
		flagName := args[slices.Index(args, "--")+1]
		if code != exitUsage || !strings.Contains(errs, `"`+flagName+`" after "--"`) || !strings.Contains(errs, `"--" ends the flags`) ||
			strings.Contains(errs, "unknown operation") {
			t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit %d saying that %s after \"--\" is not a flag",
				strings.Join(args, " "), code, out, errs, exitUsage, flagName)
		}
	}
	if _, _, errs := runCmd("pair", "--", "--config", "x"); !strings.Contains(errs, "duplex pair OPERATION") {
		t.Errorf("pair -- --config x: stderr %q; want the rule: duplex pair OPERATION, then its flags", errs)
	}
}
