package main

import (
	"bytes"
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
)

// runCmdCancelled runs a command whose context has ended: a command that
// takes bad input for good and starts (a demo) stops at once.
func runCmdCancelled(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// flagsTaking lists the flags of the command cmd that take a value, as its
// usage spells them ("--config FILE"): name and what it takes.
func flagsTaking(t *testing.T, cmd []string) [][2]string {
	t.Helper()
	_, out, _ := runCmd(append(cmd, "-h")...)
	var fl [][2]string
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z-]+) ([A-Z]+)$`).FindAllStringSubmatch(out, -1) {
		fl = append(fl, [2]string{m[1], m[2]})
	}
	if len(fl) == 0 && cmd[0] != "version" {
		t.Fatalf("duplex %s -h lists no flag that takes a value:\n%s", strings.Join(cmd, " "), out)
	}
	return fl
}

// TestAFlagGivenEmptyIsBadUsage: every flag that takes a value, given an
// empty one (a script's --dir "$DIR" with DIR unset), is refused, exit 2,
// before anything is done, saying which flag is empty and what it takes,
// in one form for every command and flag: "--dir: empty: give --dir DIR"
// (", or leave it out" where the flag is optional). Before: duplex demo
// --dir "" ran a demo in a new temporary directory, as without --dir;
// duplex etcd --dir "" and every required --config "" said "--dir DIR is
// required" / "--config FILE is required", as if left out; --timeout ""
// said '--timeout "": give a duration', --peer "" '--peer "": want an
// http or https URL'.
func TestAFlagGivenEmptyIsBadUsage(t *testing.T) {
	for _, cmd := range everyCommand() {
		for _, fl := range flagsTaking(t, cmd) {
			for _, args := range [][]string{
				append(append([]string{}, cmd...), "--"+fl[0], ""),
				append(append([]string{}, cmd...), "--"+fl[0]+"="),
			} {
				code, out, errs := runCmdCancelled(args...)
				want := "duplex: " + strings.Join(cmd, " ") + ": --" + fl[0] + ": empty: give --" + fl[0] + " " + fl[1]
				if code != exitUsage || !strings.HasPrefix(errs, want) || strings.Count(errs, "\n") != 1 || out != "" {
					t.Errorf("duplex %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, out, errs, want)
				}
			}
		}
	}
}

// TestAFlagLastWithoutItsValueSaysSo: a flag that takes a value, last on the
// line without one, is refused naming the flag as the usage spells it and
// what it takes. Before: "flag needs an argument: -dir", the flag
// package's words.
func TestAFlagLastWithoutItsValueSaysSo(t *testing.T) {
	for _, cmd := range everyCommand() {
		for _, fl := range flagsTaking(t, cmd) {
			args := append(append([]string{}, cmd...), "--"+fl[0])
			code, out, errs := runCmdCancelled(args...)
			want := "duplex: " + strings.Join(cmd, " ") + ": --" + fl[0] + " needs a value: give --" + fl[0] + " " + fl[1]
			if code != exitUsage || !strings.HasPrefix(errs, want) || out != "" {
				t.Errorf("duplex %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, out, errs, want)
			}
		}
	}
}

// TestABadValueIsNamedOneWay: a value a flag does not take is named in one
// form, "--flag VALUE: why", whatever the command. Before: pair's
// "--timeout must be positive" and switchover's "--timeout 0s: want a
// positive duration such as 90s or 5m" beside recover's "--timeout 0s:
// must be positive"; pair rate's '--copy: size "abc": unknown unit' and
// "--link: 1 bytes per second is too small".
func TestABadValueIsNamedOneWay(t *testing.T) {
	_, path := pairSession(t, map[string]string{"vol1": "duplex"})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pair", "add", "vol1", "--config", path, "--timeout", "0"}, `pair add: --timeout "0": must be positive`},
		{[]string{"pair", "suspend", "vol1", "--config", path, "--timeout", "0s"}, `pair suspend: --timeout "0s": must be positive`},
		{[]string{"pair", "rate", "--config", path, "--copy", "1MiB", "--timeout", "0s"}, `pair rate: --timeout "0s": must be positive`},
		{[]string{"switchover", "--config", path, "--timeout", "0s"}, `switchover: --timeout "0s": must be positive`},
		{[]string{"recover", "--config", path, "--timeout", "0s"}, `recover: --timeout "0s": must be positive`},
		{[]string{"pair", "rate", "--config", path, "--copy", "abc"}, `pair rate: --copy "abc": unknown unit "abc"`},
		{[]string{"pair", "rate", "--config", path, "--copy", "50MiBx"}, `pair rate: --copy "50MiBx": unknown unit "MiBx"`},
		{[]string{"pair", "rate", "--config", path, "--link", "1"}, `pair rate: --link "1": too small: 0 (no limit) or at least 1KiB`},
	} {
		code, out, errs := runCmd(tc.args...)
		if code != exitUsage || !strings.HasPrefix(errs, "duplex: "+tc.want) || out != "" {
			t.Errorf("duplex %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errs, "duplex: "+tc.want)
		}
	}
}

// TestDrillsOperationIsNamed: drill's operation missing or unknown is
// said as pair's and couple's are. Before: "drill: want start or stop"
// for both, the unknown one not named.
func TestDrillsOperationIsNamed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"drill", "--config", "F"}, "drill: the operation is missing: start or stop"},
		{[]string{"drill", "begin", "--config", "F"}, `drill: unknown operation "begin": want start or stop`},
	} {
		checkBadUsage(t, tc.args, tc.want)
	}
}

// TestADeadAddrIsNamedByItsCommand: a pair operation whose --addr answers
// nothing fails, exit 1, its line beginning with the command, as every
// other error of it does. Before: "duplex: the site --addr names,
// 127.0.0.1:N, gave no status (...)", which command failed left to the
// reader.
func TestADeadAddrIsNamedByItsCommand(t *testing.T) {
	_, path := pairSession(t, map[string]string{"vol1": "duplex"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{
		{"pair", "add", "vol1"}, {"pair", "suspend", "--all"}, {"pair", "resume", "vol1"}, {"pair", "delete", "vol1"}, {"pair", "rate", "--copy", "0"},
	} {
		code, out, errs := runCmd(append(args, "--config", path, "--addr", dead)...)
		want := "duplex: " + args[0] + " " + args[1]
		if code != exitFailure || !strings.HasPrefix(errs, want) || !strings.Contains(errs, dead) || out != "" {
			t.Errorf("duplex %q --addr %s (nothing there): exit %d, stdout %q, stderr %q; want exit 1, the line beginning %q", args, dead, code, out, errs, want)
		}
	}
}
