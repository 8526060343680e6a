package main

import (
	"bytes"
	"strings"
	"testing"
)

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageAndExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
		in   string // expected in stdout+stderr
	}{
		{nil, exitUsage, "Usage:"},
		{[]string{"help"}, exitOK, "duplex demo"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"version"}, exitOK, "duplex "},
		{[]string{"version", "extra"}, exitUsage, "unexpected argument"},
		{[]string{"primary"}, exitUsage, "--config FILE is required"},
		{[]string{"secondary", "--nope"}, exitUsage, "flag provided but not defined"},
		{[]string{"status"}, exitUsage, "--config FILE or --addr ADDR is required"},
		{[]string{"status", "--config", "x", "--addr", "y"}, exitUsage, "not both"},
		{[]string{"recover"}, exitUsage, "--config FILE is required"},
		{[]string{"primary", "--config", "/nonexistent/duplex.toml"}, exitFailure, "nonexistent"},
		{[]string{"demo", "-h"}, exitOK, "-no-workload"},
	}
	for _, c := range cases {
		code, out, errs := runCmd(c.args...)
		if code != c.code || !strings.Contains(out+errs, c.in) {
			t.Errorf("duplex %v: exit %d, output %q; want exit %d and %q", c.args, code, out+errs, c.code, c.in)
		}
	}
}

func TestHelpListsEveryCommand(t *testing.T) {
	_, out, _ := runCmd("help")
	for _, c := range commands() {
		if !strings.Contains(out, "duplex "+c.name) {
			t.Errorf("help does not show usage of %q", c.name)
		}
	}
}

func TestBytesIEC(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 256 << 20: "256.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := bytesIEC(n); got != want {
			t.Errorf("bytesIEC(%d) = %q, want %q", n, got, want)
		}
	}
}
