package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/config"
	"duplex/nbd"
	"duplex/secondary"
	"duplex/site"

	"golang.org/x/sys/unix"
)

// TestARecoverForceStoppedWhileStartingDoesNotFence: duplex recover
// --force, sent SIGTERM while the secondary's start waits on its disk
// (its state file a FIFO), stops without fencing even when the start
// then ends within the grace it is given: the operator who stopped it
// finds the site as the start left it, taking its primary again, and
// recover exits 1 saying it stopped before it fenced.
func TestARecoverForceStoppedWhileStartingDoesNotFence(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	path, cfg := recoverSession(t, dir, startupSession(dir))
	// A recover without --force leaves a state file and no fence.
	if code, out := runDuplex(t, "recover", "--config", path, "--log-level", "error"); code != exitOK {
		t.Fatalf("the first recover exited %d:\n%s", code, out)
	}
	recoverStoppedWhileStarting(t, cfg, "recover", "--config", path, "--force")
}

// TestARecoverAtStoppedWhileStartingDoesNotFence: as above for recover
// --at, at a secondary whose history holds the groups it applied: stopped
// while starting, it does not fence (nor, after it, undo any group).
func TestARecoverAtStoppedWhileStartingDoesNotFence(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	c := startupSession(dir)
	c.Secondary.History = config.Duration(time.Hour)
	secCfg := writeSessionConfig(t, dir, c)
	sec, secLog, line := startSite(t, "secondary", "secondary", "--config", secCfg, "--log-level", "info")
	c.Primary.Secondary = regexp.MustCompile(`listen=(\S+)`).FindStringSubmatch(line)[1]
	secControl := regexp.MustCompile(`control=(\S+)`).FindStringSubmatch(line)[1]
	prim, primLog, pline := startSite(t, "primary", "primary", "--config", writeSessionConfig(t, mkdir(t, filepath.Join(dir, "p")), c), "--log-level", "info")
	cl, err := nbd.Dial(regexp.MustCompile(`nbd=(\S+)`).FindStringSubmatch(pline)[1], "vol1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := cl.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i)*4096); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	cl.Close()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		_, out, _ := runCmd("status", "--json", "--addr", secControl)
		if m := regexp.MustCompile(`"group": (\d+)`).FindStringSubmatch(out); m != nil && m[1] != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the secondary applied no group:\nprimary:\n%s\nsecondary:\n%s", primLog.String(), secLog.String())
		}
	}
	for _, d := range []*exec.Cmd{prim, sec} {
		d.Process.Signal(syscall.SIGTERM)
		if err := d.Wait(); err != nil {
			t.Fatalf("a site after SIGTERM: %v\nprimary:\n%s\nsecondary:\n%s", err, primLog.String(), secLog.String())
		}
	}
	path, cfg := recoverSession(t, dir, c)
	recoverStoppedWhileStarting(t, cfg, "recover", "--config", path, "--at", "-0s")
}

// recoverSession writes c under dir, its secondary without a control
// address (recover starts the secondary in its own process), and loads it.
func recoverSession(t *testing.T, dir string, c *config.Config) (string, *config.Config) {
	t.Helper()
	c.Secondary.Control = ""
	path := writeSessionConfig(t, dir, c)
	return path, firstStart(t, path)
}

// stopWhileStarting runs duplex ARGS (a recover that fences) with the
// state file of cfg's secondary replaced by a FIFO, signals it (SIGTERM)
// while its start waits to read it, hands the start the state file as it
// was after serveAfter, and returns what it printed once it exited, failing
// the test unless with status 1 within 10 s of the signal.
func stopWhileStarting(t *testing.T, cfg *config.Config, serveAfter time.Duration, args ...string) string {
	t.Helper()
	state := site.StatePath(cfg)
	saved, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	cmd, log, exited := startHungOnFIFO(t, "recover", state, args...)
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(serveAfter)
	done := make(chan struct{})
	defer close(done)
	go serveFIFO(state, saved, cmd.Process.Pid, done)
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
			t.Errorf("recover stopped while starting exited %v, want status %d:\n%s", err, exitFailure, log.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("recover has not exited 10 s after SIGTERM:\n%s", log.String())
	}
	return log.String()
}

// recoverStoppedWhileStarting runs duplex ARGS (a recover that fences)
// with the state file of cfg's secondary replaced by a FIFO, signals it
// while its start waits to read it, then hands the start the state file
// as it was, well within SecondaryStartStopGrace: recover is to exit 1,
// saying it stopped before fencing, the site not fenced.
func recoverStoppedWhileStarting(t *testing.T, cfg *config.Config, args ...string) {
	t.Helper()
	// Once the signal is taken, the start is handed its state file: it
	// ends within the grace, as a start that waited on a slow disk does.
	// (One that did not, on a loaded machine, is given up: no fence
	// either.)
	out := stopWhileStarting(t, cfg, 500*time.Millisecond, args...)
	t.Logf("recover stopped while starting:\n%s", out)
	if strings.Contains(out, "secondary fenced") || strings.Contains(out, "fenced: the volumes start") {
		t.Errorf("recover fenced the secondary after SIGTERM:\n%s", out)
	}
	last := out[strings.LastIndex(out, "duplex: ")+1:]
	switch {
	case !strings.Contains(out, "duplex: "):
		t.Errorf("recover stopped while starting printed no error:\n%s", out)
	case strings.Contains(last, "stopped while starting"):
		t.Logf("the start did not end within the grace: given up, which does not fence either")
	case !strings.Contains(last, "not fenced"):
		t.Errorf("recover's last words do not say the secondary was not fenced:\n%s", out)
	}
	if b, err := os.ReadFile(secondary.IdentityPath(site.StatePath(cfg))); err == nil && strings.Contains(string(b), `"fenced"`) {
		t.Errorf("the site is fenced after a recover stopped while starting: %s", b)
	}
}

// serveFIFO hands data to every reader that opens the FIFO fifo in
// process pid (a start reads its state file more than once) until done is
// closed or fifo is no longer a FIFO (a state file written since, by a
// rename).
func serveFIFO(fifo string, data []byte, pid int, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-time.After(5 * time.Millisecond):
		}
		// Without a reader waiting, the open fails (ENXIO) at once.
		fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
			syscall.Close(fd)
			return
		}
		syscall.Write(fd, data)
		// The reader sees the end of the data only once no writer holds
		// the FIFO: a write for its next open, made while this reader is
		// still reading (a start slow on a loaded machine), would reach
		// this one too, twice the file. So the next is made once it let
		// go. Its descriptor may not be in /proc yet when the write ends
		// (its open returns after the writer's), so first wait until it
		// has read the data, which it does through that descriptor.
		for unread(fd) > 0 {
			select {
			case <-done:
				syscall.Close(fd)
				return
			case <-time.After(time.Millisecond):
			}
		}
		syscall.Close(fd)
		for holdsOpen(pid, fifo) {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}
}

// unread is how many bytes written to the pipe fd no reader has taken
// yet (FIONREAD, TIOCINQ to x/sys); an error counts as none, so that a caller waiting on it
// goes on.
func unread(fd int) int {
	n, err := unix.IoctlGetInt(fd, unix.TIOCINQ)
	if err != nil {
		return 0
	}
	return n
}

// holdsOpen reports whether process pid has the file at path open.
func holdsOpen(pid int, path string) bool {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && l == path {
			return true
		}
	}
	return false
}

// TestARecoverStoppedWhileARunningSecondaryFences: recover --force at a
// running secondary, stopped (SIGTERM) once its fence request has reached
// the secondary, which applies its backlog first, says what is true: the
// fence goes on there (it does not watch the connection), and how to see
// it end; it does not end with a bare "context canceled".
func TestARecoverStoppedWhileARunningSecondaryFences(t *testing.T) {
	f := &fencingSecondary{journaled: 1 << 30, fenced: make(chan struct{})}
	path := serveFencing(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for !func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.fencing }() {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	var out, errs bytes.Buffer
	code := run(ctx, []string{"recover", "--config", path, "--force"}, &out, &errs)
	t.Logf("recover stopped while the secondary fences: exit %d\n%s%s", code, out.String(), errs.String())
	if code != exitFailure || !strings.Contains(errs.String(), "fence goes on at the secondary") || !strings.Contains(errs.String(), "duplex status") {
		t.Errorf("recover stopped while the secondary fences: exit %d, stderr %q; want 1, saying the fence goes on and where to see it", code, errs.String())
	}
}
