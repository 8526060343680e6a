package main

import (
	"bufio"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startSite runs `duplex ARGS...` as a process and returns it, with its
// stderr (the log) collected in log, once the "ROLE started" line is
// there; that line is returned too.
func startSite(t *testing.T, role string, args ...string) (*exec.Cmd, *syncBuffer, string) {
	t.Helper()
	cmd := duplexCommand(args...)
	log := &syncBuffer{}
	pr, pw := io.Pipe()
	cmd.Stdout = log
	cmd.Stderr = io.MultiWriter(log, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); pw.Close() })
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `msg="`+role+` started"`) {
				started <- sc.Text()
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case line := <-started:
		return cmd, log, line
	case <-time.After(time.Minute):
		t.Fatalf("duplex %s did not start:\n%s", strings.Join(args, " "), log.String())
	}
	return nil, nil, ""
}

// TestSitesStopCleanlyOnSIGTERM runs both daemons as processes, flags in
// either order, connects them, and stops each with SIGTERM: the primary
// ships what it holds, and both exit 0 saying they stopped cleanly.
func TestSitesStopCleanlyOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	c := startupSession(dir)
	secCfg := writeSessionConfig(t, dir, c)
	sec, secLog, line := startSite(t, "secondary", "secondary", "--log-level", "debug", "--config", secCfg)
	m := regexp.MustCompile(`listen=(\S+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("the secondary does not log where it listens: %s", line)
	}
	pdir := filepath.Join(dir, "p")
	c.Primary.Secondary = m[1]
	primCfg := writeSessionConfig(t, mkdir(t, pdir), c)
	prim, primLog, pline := startSite(t, "primary", "primary", "--config", primCfg, "--drain-timeout", "30s", "--log-level", "info")

	control := regexp.MustCompile(`control=(\S+)`)
	addrs := []string{control.FindStringSubmatch(pline)[1], control.FindStringSubmatch(line)[1]}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		connected := 0
		for _, a := range addrs {
			code, out, _ := runCmd("status", "--json", "--addr", a)
			if code == exitOK && strings.Contains(out, `"link": "connected"`) {
				connected++
			}
		}
		if connected == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sites never connected:\nprimary:\n%s\nsecondary:\n%s", primLog.String(), secLog.String())
		}
	}
	for _, s := range []struct {
		role string
		cmd  *exec.Cmd
		log  *syncBuffer
	}{{"primary", prim, primLog}, {"secondary", sec, secLog}} {
		s.cmd.Process.Signal(syscall.SIGTERM)
		if err := s.cmd.Wait(); err != nil {
			t.Fatalf("%s after SIGTERM: %v\n%s", s.role, err, s.log.String())
		}
		if !strings.Contains(s.log.String(), s.role+" stopped cleanly") {
			t.Errorf("the %s's log does not say it stopped cleanly:\n%s", s.role, s.log.String())
		}
		if strings.Contains(s.log.String(), "duplex: ") {
			t.Errorf("the %s printed an error:\n%s", s.role, s.log.String())
		}
	}
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	writeFile(t, filepath.Join(dir, ".keep"), nil, 0o600)
	return dir
}
