package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/config"
)

// TestAFileAFlagNamesThatWillNotDoIsBadUsage: a file or directory named on
// the command line that is missing, of the wrong kind or not what the flag
// takes is a mistake of the command's input, as a bad flag value is: every
// command exits 2 for it, naming the flag and the path, whichever flag
// names it. Before, a --config file missing or invalid exited 1, a --ca
// file missing 2, and a --dir that is a file 1 without naming the flag.
func TestAFileAFlagNamesThatWillNotDoIsBadUsage(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nothere.toml")
	notTOML := filepath.Join(dir, "not.toml")
	writeFile(t, notTOML, []byte("session: x\n"), 0o644)
	invalid := filepath.Join(dir, "invalid.toml")
	writeFile(t, invalid, []byte("interval = \"20ms\"\n"), 0o644)
	for _, cmd := range everyCommand() {
		path := strings.Join(cmd, " ")
		_, usage, _ := runCmd(append(cmd, "-h")...)
		if !strings.Contains(usage, "--config FILE") {
			continue
		}
		args := append([]string{}, cmd...)
		switch path {
		case "pair add", "pair suspend", "pair resume", "pair delete":
			args = append(args, "vol1")
		case "drill":
			args = append(args, "start")
		case "couple":
			args = append(args, "list")
		}
		for _, file := range []string{missing, dir, notTOML, invalid} {
			a := append(append([]string{}, args...), "--config", file)
			code, out, errs := runCmd(a...)
			if code != exitUsage || !strings.Contains(errs, "--config") || !strings.Contains(errs, file) || strings.Count(errs, "\n") != 1 {
				t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit %d, one line naming --config and %s",
					strings.Join(a, " "), code, out, errs, exitUsage, file)
			}
		}
	}
	for _, cmd := range []string{"demo", "etcd"} {
		code, out, errs := runCmd(cmd, "--dir", notTOML)
		if code != exitUsage || !strings.Contains(errs, "--dir") || !strings.Contains(errs, notTOML) {
			t.Errorf("duplex %s --dir FILE: exit %d, stdout %q, stderr %q; want exit %d naming --dir and %s", cmd, code, out, errs, exitUsage, notTOML)
		}
		code, out, errs = runCmd(cmd, "--dir", filepath.Join(notTOML, "sub"))
		if code != exitUsage || !strings.Contains(errs, "--dir") || !strings.Contains(errs, notTOML) {
			t.Errorf("duplex %s --dir FILE/sub: exit %d, stdout %q, stderr %q; want exit %d naming --dir and %s", cmd, code, out, errs, exitUsage, notTOML)
		}
	}
}

// TestAConfigWithoutWhatTheCommandReadsIsBadUsage: a valid --config that
// lacks the section or key the command reads (a site's section, its
// control address, the token file, [coupling]) is the wrong file given, as
// one missing is: exit 2, naming --config, the file and what it lacks,
// before anything is sent. Before, exit 1, as for a site that fails, and
// drill's missing token file said "pair operations need it".
func TestAConfigWithoutWhatTheCommandReadsIsBadUsage(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, edit func(c *config.Config)) string {
		c := startupSession(dir)
		c.ControlTokenFile = "token"
		edit(c)
		sub := filepath.Join(dir, name)
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		return writeSessionConfig(t, sub, c)
	}
	noPrimary := write("noprimary", func(c *config.Config) { c.Primary = config.Primary{} })
	noSecondary := write("nosecondary", func(c *config.Config) { c.Secondary = config.Secondary{} })
	noToken := write("notoken", func(c *config.Config) { c.ControlTokenFile = "" })
	noControl := write("nocontrol", func(c *config.Config) { c.Primary.Control, c.Secondary.Control = "", "" })
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"primary", "--config", noPrimary}, "no [primary] section"},
		{[]string{"secondary", "--config", noSecondary}, "no [secondary] section"},
		{[]string{"recover", "--config", noSecondary}, "no [secondary] section"},
		{[]string{"promote", "--config", noSecondary}, "no [secondary] section"},
		{[]string{"rejoin", "--config", noPrimary}, "no [primary] section"},
		{[]string{"recover", "--coupled", "--config", noToken}, "no [coupling] section"},
		{[]string{"couple", "list", "--config", noToken}, "no [coupling] section"},
		{[]string{"drill", "stop", "--config", noSecondary}, "no [secondary] control address"},
		{[]string{"drill", "stop", "--config", noToken}, "no control_token_file"},
		{[]string{"pair", "add", "vol1", "--config", noToken}, "no control_token_file"},
		{[]string{"pair", "rate", "--copy", "1MiB", "--config", noToken}, "no control_token_file"},
		{[]string{"switchover", "--config", noToken}, "no control_token_file"},
		{[]string{"pair", "add", "vol1", "--config", noControl}, "no primary control address"},
		{[]string{"status", "--config", noControl}, "no control address"},
		{[]string{"rejoin", "--config", noControl}, "no [secondary] control address"},
	} {
		code, out, errs := runCmd(tc.args...)
		file := tc.args[len(tc.args)-1]
		if code != exitUsage || !strings.Contains(errs, "--config "+file) || !strings.Contains(errs, tc.want) || strings.Contains(errs, "pair operations") {
			t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit %d naming --config %s and %q",
				strings.Join(tc.args, " "), code, out, errs, exitUsage, file, tc.want)
		}
	}
}
