package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
)

// startupSession is a session whose listeners all take any free port and
// whose volumes are small: a valid config each case then breaks one way.
func startupSession(dir string) *config.Config {
	c := config.Demo(dir)
	c.Session = "startup"
	c.ControlTokenFile = ""
	c.Primary.NBD, c.Primary.Control = "127.0.0.1:0", "127.0.0.1:0"
	c.Primary.Secondary = "127.0.0.1:1"
	c.Secondary.Listen, c.Secondary.Control, c.Secondary.NBD = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	for i := range c.Primary.Subsystems {
		for j := range c.Primary.Subsystems[i].Volumes {
			c.Primary.Subsystems[i].Volumes[j].Size = config.MiB
		}
	}
	return c
}

// runDuplex runs the duplex binary (this test binary, see TestMain) with a
// bounded wait: a process that does not exit fails the test instead of
// hanging it.
func runDuplex(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "DUPLEX_MAIN=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("duplex %v did not exit within a minute:\n%s", args, out.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

func writeSessionConfig(t *testing.T, dir string, c *config.Config) string {
	t.Helper()
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "duplex.toml")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// busyAddr returns an address something else listens on until the test ends.
func busyAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestDaemonStartupMistakesPrintTheirError starts each daemon with one
// mistake an operator makes and expects its real error and exit status 1,
// never a crash.
func TestDaemonStartupMistakesPrintTheirError(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	cases := []struct {
		name string
		role string
		// edit breaks the session in dir; it may also create files there.
		edit func(t *testing.T, dir string, c *config.Config)
		want string
		// usage: the config is not what --config takes, exit 2.
		usage bool
	}{
		{"primary image of the wrong size", "primary", func(t *testing.T, dir string, c *config.Config) {
			writeFile(t, c.Primary.Subsystems[1].Volumes[0].Path, make([]byte, 4096), 0o600)
		}, "image is 4096 bytes, configured size is 1048576", false},
		{"primary token file missing", "primary", func(t *testing.T, dir string, c *config.Config) {
			c.ControlTokenFile = filepath.Join(dir, "token")
		}, "control token: stat " + "TOKEN" + ": no such file or directory", false},
		{"primary token file readable by others", "primary", func(t *testing.T, dir string, c *config.Config) {
			c.ControlTokenFile = filepath.Join(dir, "token")
			writeFile(t, c.ControlTokenFile, []byte("secret\n"), 0o644)
		}, "is accessible to other users (mode -rw-r--r--): chmod 600 it", false},
		{"primary config without a primary section", "primary", func(t *testing.T, dir string, c *config.Config) {
			c.Primary = config.Primary{}
		}, "has no [primary] section", true},
		{"primary NBD address in use", "primary", func(t *testing.T, dir string, c *config.Config) {
			c.Primary.NBD = busyAddr(t)
		}, "NBD address: listen tcp", false},
		{"primary control address in use", "primary", func(t *testing.T, dir string, c *config.Config) {
			c.Primary.Control = busyAddr(t)
		}, "control address: listen tcp", false},
		{"primary plaintext link off this machine", "primary", func(t *testing.T, dir string, c *config.Config) {
			c.Primary.Secondary = "192.0.2.1:7402"
			c.Secondary = config.Secondary{}
		}, "is not a loopback address", false},

		{"secondary image of the wrong size", "secondary", func(t *testing.T, dir string, c *config.Config) {
			writeFile(t, c.Secondary.Volumes[2].Path, make([]byte, 4096), 0o600)
		}, "image is 4096 bytes, configured size is 1048576", false},
		{"secondary token file missing", "secondary", func(t *testing.T, dir string, c *config.Config) {
			c.ControlTokenFile = filepath.Join(dir, "token")
		}, "control token: stat " + "TOKEN" + ": no such file or directory", false},
		{"secondary token file readable by others", "secondary", func(t *testing.T, dir string, c *config.Config) {
			c.ControlTokenFile = filepath.Join(dir, "token")
			writeFile(t, c.ControlTokenFile, []byte("secret\n"), 0o644)
		}, "is accessible to other users (mode -rw-r--r--): chmod 600 it", false},
		{"secondary config without a secondary section", "secondary", func(t *testing.T, dir string, c *config.Config) {
			c.Secondary = config.Secondary{}
		}, "has no [secondary] section", true},
		{"secondary plaintext listen off this machine", "secondary", func(t *testing.T, dir string, c *config.Config) {
			c.Secondary.Listen = "0.0.0.0:0"
		}, "is not a loopback address, so the link would accept volume data unencrypted", false},
		{"secondary journal unusable", "secondary", func(t *testing.T, dir string, c *config.Config) {
			// Where the journal directory should be is a file: opening the
			// journal fails as it does on a full disk.
			writeFile(t, c.Secondary.Journal, []byte("x"), 0o600)
		}, "journal " + "JOURNAL", false},
		{"secondary journal on a full disk", "secondary", func(t *testing.T, dir string, c *config.Config) {
			fullDisk(t, filepath.Dir(c.Secondary.Journal))
		}, "free space, or put the journal on a larger file system", false},
		{"secondary listen address in use", "secondary", func(t *testing.T, dir string, c *config.Config) {
			c.Secondary.Listen = busyAddr(t)
		}, "listen tcp", false},
		{"secondary NBD address in use", "secondary", func(t *testing.T, dir string, c *config.Config) {
			c.Secondary.NBD = busyAddr(t)
		}, "NBD address: listen tcp", false},
		{"secondary control address in use", "secondary", func(t *testing.T, dir string, c *config.Config) {
			c.Secondary.Control = busyAddr(t)
		}, "control address: listen tcp", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := startupSession(dir)
			tc.edit(t, dir, c)
			want := strings.NewReplacer("TOKEN", filepath.Join(dir, "token"), "JOURNAL", filepath.Join(dir, "secondary", "journal")).Replace(tc.want)
			code, out := runDuplex(t, tc.role, "--config", writeSessionConfig(t, dir, c))
			wantCode := exitFailure
			if tc.usage {
				wantCode = exitUsage
			}
			checkFailure(t, code, wantCode, out, want)
		})
	}
}

// TestCommandMistakesPrintTheirError runs the operator's commands with a
// config that is missing or does not fit, and a volume the session lacks.
func TestCommandMistakesPrintTheirError(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "nothere.toml")
	c := startupSession(dir)
	c.ControlTokenFile = filepath.Join(dir, "token")
	writeFile(t, c.ControlTokenFile, []byte("secret\n"), 0o600)
	good := writeSessionConfig(t, dir, c)
	wrongDir := t.TempDir()
	wc := startupSession(wrongDir)
	wrongSize := writeSessionConfig(t, wrongDir, wc)
	firstStart(t, wrongSize)
	writeFile(t, wc.Secondary.Volumes[0].Path, make([]byte, 4096), 0o600)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status", "--config", missing}, exitUsage, missing + ": no such file or directory"},
		{[]string{"pair", "suspend", "vol1", "--config", missing}, exitUsage, missing + ": no such file or directory"},
		{[]string{"recover", "--config", missing}, exitUsage, missing + ": no such file or directory"},
		{[]string{"pair", "suspend", "vol9", "--config", good}, exitUsage, `no volume "vol9" in session "startup"`},
		{[]string{"pair", "resume", "vol9", "--config", good}, exitUsage, `no volume "vol9" in session "startup"`},
		{[]string{"recover", "--config", wrongSize}, exitFailure, "image is 4096 bytes, configured size is 1048576"},
	}
	for _, tc := range cases {
		code, out := runDuplex(t, tc.args...)
		checkFailure(t, code, tc.code, out, tc.want)
	}
}

func checkFailure(t *testing.T, code, wantCode int, out, want string) {
	t.Helper()
	if strings.Contains(out, "panic") || strings.Contains(out, "nil pointer") || strings.Contains(out, "goroutine ") {
		t.Fatalf("crashed (exit %d):\n%s", code, out)
	}
	if code != wantCode || !strings.Contains(out, want) {
		t.Fatalf("exit %d, want %d with %q in the output:\n%s", code, wantCode, want, out)
	}
	if c := saidTwice(out); c != "" {
		t.Errorf("the error names its context twice (%q):\n%s", c, out)
	}
}

// saidTwice returns the context that a line of out names twice, as two
// layers that each wrap an error with it write it ("cannot start primary:
// primary: ..."), or "" if none: a context of one word right after one
// that holds that word (or the word with an ending, "promote" and
// "promoted").
func saidTwice(out string) string {
	for _, line := range strings.Split(out, "\n") {
		parts := strings.Split(line, ": ")
		for i := 1; i < len(parts)-1; i++ {
			word := parts[i]
			if word == "" || strings.ContainsAny(word, " /.") {
				continue
			}
			for _, w := range strings.Fields(parts[i-1]) {
				if w == word || (len(w) >= 5 && len(word) >= 5 && (strings.HasPrefix(w, word) || strings.HasPrefix(word, w))) {
					return parts[i-1] + ": " + word + ": "
				}
			}
		}
	}
	return ""
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// fullDisk mounts a small tmpfs at dir and fills it, for the journal of a
// secondary restarted while its disk is still full; without the privilege to
// mount, the test is skipped.
func fullDisk(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small file system here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
}
