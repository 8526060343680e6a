package main

import (
	"bytes"
	"context"
	"flag"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
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
		{[]string{"version", "extra"}, exitUsage, `version: unexpected argument "extra"`},
		{[]string{"primary"}, exitUsage, "primary: --config FILE is required"},
		{[]string{"secondary", "--nope"}, exitUsage, "secondary: unknown flag --nope"},
		{[]string{"status"}, exitUsage, "--config FILE or --addr ADDR is required"},
		{[]string{"status", "--config", "x", "--addr", "y"}, exitUsage, "not both"},
		{[]string{"recover"}, exitUsage, "--config FILE is required"},
		{[]string{"promote"}, exitUsage, "promote: --config FILE is required"},
		{[]string{"rejoin"}, exitUsage, "rejoin: --config FILE is required"},
		{[]string{"switchover"}, exitUsage, "switchover: --config FILE is required"},
		{[]string{"switchover", "--config", "x", "--timeout", "0s"}, exitUsage, `--timeout "0s": must be positive`},
		{[]string{"recover", "--config", "x", "--timeout", "0s"}, exitUsage, `--timeout "0s": must be positive`},
		{[]string{"promote", "--config", "x", "--timeout", "0s"}, exitUsage, `--timeout "0s": must be positive`},
		{[]string{"help", "switchover"}, exitOK, "ESHUTDOWN"},
		{[]string{"primary", "--config", "/nonexistent/duplex.toml"}, exitUsage, "--config: open /nonexistent/duplex.toml"},
		{[]string{"primary", "--config", "/nonexistent/duplex.toml", "--log-level", "loud"}, exitUsage, "--config: open /nonexistent/duplex.toml"},
		{[]string{"demo", "--log-level", "loud"}, exitUsage, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"demo", "-h"}, exitOK, "--no-workload"},
		{[]string{"pair"}, exitUsage, "pair: the operation is missing"},
		{[]string{"pair", "-h"}, exitOK, "duplex pair rate"},
		{[]string{"pair", "frob", "vol1"}, exitUsage, `unknown operation "frob"`},
		{[]string{"pair", "add"}, exitUsage, "pair add: VOLUME or --all is required"},
		{[]string{"pair", "add", "vol1", "vol2"}, exitUsage, `unexpected argument "vol2"`},
		{[]string{"pair", "add", "vol1", "--all"}, exitUsage, "not both"},
		{[]string{"pair", "suspend", "vol1"}, exitUsage, "pair suspend: --config FILE is required"},
		{[]string{"pair", "add", "vol1", "--drain"}, exitUsage, "pair add: unknown flag --drain"},
		{[]string{"pair", "resume", "--all", "--inconsistent"}, exitUsage, "--inconsistent takes one VOLUME"},
	}
	for _, c := range cases {
		code, out, errs := runCmd(c.args...)
		if code != c.code || !strings.Contains(out+errs, c.in) {
			t.Errorf("duplex %v: exit %d, output %q; want exit %d and %q", c.args, code, out+errs, c.code, c.in)
		}
	}
}

// everyCommand lists each command by the arguments that name it.
func everyCommand() [][]string {
	var cmds [][]string
	for _, c := range commands() {
		if c.name == "pair" {
			for _, op := range pairOps() {
				cmds = append(cmds, []string{"pair", op.name})
			}
			continue
		}
		cmds = append(cmds, []string{c.name})
	}
	return cmds
}

// TestBadFlagIsOneLine: every command refuses a flag it does not have with
// exactly one line on stderr, "duplex: ...", nothing on stdout, and exit
// status 2, whether the flag comes first or last.
func TestBadFlagIsOneLine(t *testing.T) {
	for _, cmd := range everyCommand() {
		for _, args := range [][]string{
			append(append([]string{}, cmd...), "--no-such-flag"),
			append(append([]string{cmd[0], "--no-such-flag"}, cmd[1:]...), "vol1"),
		} {
			code, out, errs := runCmd(args...)
			lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
			if code != exitUsage || out != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "duplex: ") ||
				!strings.Contains(errs, "-no-such-flag") {
				t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit 2 and one line \"duplex: ...\" naming the flag",
					strings.Join(args, " "), code, out, errs)
			}
		}
	}
}

// TestHelpFlag: -h prints the command's usage to stdout, flags as the usage
// line spells them, and exits 0.
func TestHelpFlag(t *testing.T) {
	for _, cmd := range everyCommand() {
		code, out, errs := runCmd(append(cmd, "-h")...)
		want := "usage: duplex " + strings.Join(cmd, " ")
		if code != exitOK || errs != "" || !strings.HasPrefix(out, want) {
			t.Errorf("duplex %s -h: exit %d, stdout %q, stderr %q; want exit 0 and %q on stdout", strings.Join(cmd, " "), code, out, errs, want)
		}
		if regexp.MustCompile(`\n  -[a-z]`).MatchString(out) {
			t.Errorf("duplex %s -h spells a flag with one dash:\n%s", strings.Join(cmd, " "), out)
		}
	}
}

// TestLogLevelOnEveryCommandThatLogs: every command that logs (a site it
// runs or opens, or the etcd it runs) takes --log-level, in its usage line
// and refused with exit 2 when it names no level; the others only report
// to stdout and fail with their one error.
func TestLogLevelOnEveryCommandThatLogs(t *testing.T) {
	silent := map[string]bool{"status": true, "switchover": true, "couple": true, "drill": true, "version": true,
		"pair add": true, "pair suspend": true, "pair resume": true, "pair delete": true, "pair rate": true}
	for _, cmd := range everyCommand() {
		path := strings.Join(cmd, " ")
		_, out, _ := runCmd(append(cmd, "-h")...)
		usage, _, _ := strings.Cut(out, "\n")
		if has := strings.Contains(usage, "[--log-level LEVEL]"); has == silent[path] {
			t.Errorf("duplex %s: usage %q; want --log-level only on a command that logs", path, usage)
		}
		if silent[path] {
			continue
		}
		dir := t.TempDir()
		args := append(cmd, "--config", writeSessionConfig(t, dir, startupSession(dir)), "--log-level", "loud")
		if path == "demo" || path == "etcd" {
			args = append(cmd, "--dir", dir, "--log-level", "loud")
		}
		code, _, errs := runCmd(args...)
		if code != exitUsage || !strings.Contains(errs, `--log-level "loud": want debug, info, warn or error`) {
			t.Errorf("duplex %s --log-level loud: exit %d, stderr %q; want exit 2 naming the level", path, code, errs)
		}
	}
}

// TestUsageShowsRequiredConfig: where --config is required, the usage line
// shows it bare; where it is optional, in brackets.
func TestUsageShowsRequiredConfig(t *testing.T) {
	required := map[string]bool{"primary": true, "secondary": true, "recover": true, "promote": true, "rejoin": true, "switchover": true,
		"couple": true, "drill": true, "pair add": true, "pair suspend": true, "pair resume": true, "pair delete": true, "pair rate": true}
	_, help, _ := runCmd("help")
	for _, cmd := range everyCommand() {
		path := strings.Join(cmd, " ")
		code, out, _ := runCmd(append(cmd, "-h")...)
		if code != exitOK {
			t.Fatalf("duplex %s -h: exit %d", path, code)
		}
		usage, _, _ := strings.Cut(out, "\n")
		args := strings.TrimPrefix(usage, "usage: duplex "+path)
		if !strings.Contains(help, path) || !strings.Contains(help, strings.TrimSpace(args)) {
			t.Errorf("duplex help does not show %q", usage)
		}
		switch {
		case required[path] && (!strings.Contains(args, "--config FILE") || strings.Contains(args, "[--config")):
			t.Errorf("%s: --config is required, usage says %q", path, usage)
		case !required[path] && strings.Contains(args, " --config FILE ") && !strings.Contains(args, "(--config FILE |"):
			t.Errorf("%s: --config is optional, usage says %q", path, usage)
		}
		// Without it, a command that requires --config says so.
		if required[path] {
			a := cmd
			if strings.HasPrefix(path, "pair") && path != "pair rate" {
				a = append(a, "vol1")
			}
			code, _, errs := runCmd(a...)
			if code != exitUsage || !strings.Contains(errs, "--config FILE is required") {
				t.Errorf("duplex %s without --config: exit %d, stderr %q", path, code, errs)
			}
		}
	}
}

// TestErrorIsOneLine: an error of several lines (a config's problems) is
// printed as one.
func TestErrorIsOneLine(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/bad.toml"
	writeFile(t, path, []byte("session = \"s\"\n[primary]\nnbd = \"nowhere\"\ncontrol = \"x\"\n"), 0o600)
	code, out, errs := runCmd("primary", "--config", path)
	if code != exitUsage || out != "" || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "duplex: ") || !strings.Contains(errs, "problems: primary.nbd") || !strings.Contains(errs, "; primary.control") {
		t.Errorf("primary with a config of several problems: exit %d, stdout %q, stderr %q; want exit 2 and them on one line", code, out, errs)
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

func TestParseArgsInterleaves(t *testing.T) {
	cases := []struct {
		args       []string
		pos        []string
		config     string
		wait, drop bool
	}{
		{[]string{"add", "vol1", "--config", "F", "--wait"}, []string{"add", "vol1"}, "F", true, false},
		{[]string{"add", "--config", "F", "vol1", "--wait"}, []string{"add", "vol1"}, "F", true, false},
		{[]string{"--config=F", "-wait", "add", "vol1"}, []string{"add", "vol1"}, "F", true, false},
		{[]string{"add", "--", "--wait", "-x"}, []string{"add", "--wait", "-x"}, "", false, false},
		{[]string{"--wait", "--", "vol1", "--drop"}, []string{"vol1", "--drop"}, "", true, false},
		// "--" as a flag's value ends nothing.
		{[]string{"--config", "--", "vol1", "--drop"}, []string{"vol1"}, "--", false, true},
		{[]string{"--drop=false", "vol1", "--wait=true"}, []string{"vol1"}, "", true, false},
		{[]string{"-"}, []string{"-"}, "", false, false},
		{nil, []string{}, "", false, false},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		config := fs.String("config", "", "")
		wait := fs.Bool("wait", false, "")
		drop := fs.Bool("drop", false, "")
		pos, err := parseArgs(fs, c.args)
		if err != nil || !reflect.DeepEqual(pos, c.pos) || *config != c.config || *wait != c.wait || *drop != c.drop {
			t.Errorf("parseArgs(%q) = %q, %v, config %q wait %v drop %v; want %q, config %q wait %v drop %v",
				c.args, pos, err, *config, *wait, *drop, c.pos, c.config, c.wait, c.drop)
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

// TestNegativeDrainTimeoutIsBadUsage: --drain-timeout -1s is a bad value,
// exit 2 before anything starts; the primary takes it and starts,
// and on SIGTERM then ships nothing it holds, the drain over before it
// began. (The config named does not exist: a checked flag says so first.)
func TestNegativeDrainTimeoutIsBadUsage(t *testing.T) {
	for _, d := range []string{"-1s", "-5m"} {
		code, _, errs := runCmd("primary", "--config", t.TempDir()+"/none.toml", "--drain-timeout", d)
		if code != exitUsage {
			t.Errorf("primary --drain-timeout %s: exit %d (%s), want %d", d, code, strings.TrimSpace(errs), exitUsage)
		}
	}
}
