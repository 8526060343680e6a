package main

import (
	"strings"
	"testing"

	"duplex/control"
	"duplex/internal/testenv"
)

// TestBadInputSaysWhatIsWrong: mistakes of the command line found by
// running each command with bad input against a running demo, each
// refused with exit 2 saying what is wrong and what is wanted. Before:
// "--config" before the command was an unknown command; an argument too
// many after drill start or couple's SESSION said "want start or stop" or
// "want add, remove or list"; an etcd --listen or --peer that is no URL
// with a port failed as etcd's own error, exit 1 ("missing port in
// address").
func TestBadInputSaysWhatIsWrong(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--config", "F", "status"}, []string{`"--config" before the command`, "duplex status --config F"}},
		{[]string{"--json", "status", "--addr", "A"}, []string{`"--json" before the command`, "duplex status --json --addr A"}},
		{[]string{"--nope"}, []string{`"--nope" before the command`, "duplex help lists"}},
		{[]string{"drill", "start", "extra", "--config", "F"}, []string{`unexpected argument "extra"`}},
		{[]string{"drill", "stop", "start", "--config", "F"}, []string{`unexpected argument "start"`}},
		{[]string{"couple", "add", "a", "b", "--config", "F"}, []string{`unexpected argument "b"`}},
		{[]string{"etcd", "--dir", dir, "--listen", "nourl"}, []string{`--listen "nourl"`, "http://127.0.0.1:2379"}},
		{[]string{"etcd", "--dir", dir, "--peer", "http://127.0.0.1"}, []string{`--peer "http://127.0.0.1"`, "with a port"}},
		{[]string{"etcd", "--dir", dir, "--listen", "ftp://127.0.0.1:2379"}, []string{`--listen "ftp://127.0.0.1:2379"`}},
	} {
		checkBadUsage(t, tc.args, tc.want...)
	}
}

// TestAnAddrThatIsNoControlAddressIsBadUsage: --addr naming what answers
// as no control address does (an NBD export's port; a plain HTTP site
// asked over https://) is the address mistaken: exit 2 for status and the
// pair operations alike, saying what answered. Before, pair --addr at an
// NBD port the config does not name, and status --addr https:// at a
// plain HTTP site, exited 1 ("server gave HTTP response to HTTPS
// client").
func TestAnAddrThatIsNoControlAddressIsBadUsage(t *testing.T) {
	_, path := pairSession(t, map[string]string{"vol1": "duplex"})
	nbd := testenv.NBDGreeter(t)
	plain := serveStatus(t, control.Status{Session: "startup", Role: "primary"})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "--addr", "https://" + plain}, "serves plain HTTP"},
		{[]string{"pair", "suspend", "vol1", "--config", path, "--addr", nbd}, "NBD export"},
		{[]string{"pair", "suspend", "vol1", "--config", path, "--addr", "https://" + plain}, "serves plain HTTP"},
	} {
		code, out, errs := runCmd(tc.args...)
		if code != exitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit %d saying %q", strings.Join(tc.args, " "), code, out, errs, exitUsage, tc.want)
		}
	}
}

// TestAResumeInconsistentRefusedIsNamedAsTyped: the primary's refusal of
// pair resume VOLUME --inconsistent names the operation as the operator
// typed it. Before: "pair resume-inconsistent vol1: ...", the name the
// call has on the wire.
func TestAResumeInconsistentRefusedIsNamedAsTyped(t *testing.T) {
	_, path := pairSession(t, map[string]string{"vol1": "duplex"})
	code, out, errs := runCmd("pair", "resume", "vol1", "--inconsistent", "--config", path)
	if code != exitFailure || !strings.Contains(errs, "duplex: pair resume vol1 --inconsistent: ") || strings.Contains(errs, "pair resume-inconsistent") {
		t.Errorf("pair resume vol1 --inconsistent of a duplex pair: exit %d, stdout %q, stderr %q; want exit 1 and \"pair resume vol1 --inconsistent: ...\"", code, out, errs)
	}
}

// TestPairHelpShowsTheOperations: duplex pair help shows pair's usage, as
// duplex pair -h and duplex help pair do. Before: unknown operation
// "help", exit 2.
func TestPairHelpShowsTheOperations(t *testing.T) {
	code, out, errs := runCmd("pair", "help")
	if code != exitOK || !strings.Contains(out, "duplex pair rate") || errs != "" {
		t.Errorf("duplex pair help: exit %d, stdout %q, stderr %q; want pair's usage, exit 0", code, out, errs)
	}
}

// checkBadUsage runs duplex with args and fails t unless it exits 2 with
// one line on stderr that says each of want.
func checkBadUsage(t *testing.T, args []string, want ...string) {
	t.Helper()
	code, out, errs := runCmd(args...)
	ok := code == exitUsage && strings.Count(errs, "\n") == 1
	for _, w := range want {
		ok = ok && strings.Contains(errs, w)
	}
	if !ok {
		t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit %d saying %q", strings.Join(args, " "), code, out, errs, exitUsage, want)
	}
}
