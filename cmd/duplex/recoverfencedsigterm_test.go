package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/config"
	"duplex/secondary"
	"duplex/site"
)

// TestARecoverStoppedWhileStartingAFencedSecondarySaysItIsFenced: duplex
// recover --force, sent SIGTERM while the start of a secondary that an
// earlier recover fenced waits on its disk (its state file a FIFO), stops
// before fencing, as at any secondary; its last words say what is true of
// this one: fenced, by the earlier recover, and refusing its old primary,
// not that it is not fenced and takes its primary again when it restarts.
func TestARecoverStoppedWhileStartingAFencedSecondarySaysItIsFenced(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	c := startupSession(dir)
	c.Secondary.Control = ""
	path := writeSessionConfig(t, dir, c)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if code, out := runDuplex(t, "recover", "--config", path, "--force", "--log-level", "error"); code != exitOK {
		t.Fatalf("the first recover --force exited %d:\n%s", code, out)
	}
	state := site.StatePath(cfg)
	if b, err := os.ReadFile(secondary.IdentityPath(state)); err != nil || !strings.Contains(string(b), `"fenced"`) {
		t.Fatalf("the first recover --force did not fence the site: %s, %v", b, err)
	}
	saved, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	cmd, log, exited := startHungOnFIFO(t, "recover", state, "recover", "--config", path, "--force")
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	done := make(chan struct{})
	defer close(done)
	go serveFIFO(state, saved, done)
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
			t.Errorf("recover stopped while starting exited %v, want status %d:\n%s", err, exitFailure, log.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("recover has not exited 10 s after SIGTERM:\n%s", log.String())
	}
	out := log.String()
	last := out[strings.LastIndex(out, "duplex: ")+1:]
	if !strings.Contains(out, "duplex: ") || !strings.Contains(last, "stopped before fencing") {
		t.Fatalf("recover's last words do not say it stopped before fencing:\n%s", out)
	}
	if strings.Contains(last, "not fenced") || strings.Contains(last, "takes its primary again") {
		t.Errorf("recover's last words say a secondary fenced by an earlier recover is not fenced:\n%s", last)
	}
	if !strings.Contains(last, "fenced by an earlier recover") {
		t.Errorf("recover's last words do not say the secondary is fenced already:\n%s", last)
	}
}
