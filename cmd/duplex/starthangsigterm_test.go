package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/config"
	"duplex/site"
)

// TestAPrimaryWhoseStartHangsStopsOnSIGTERM: a primary whose start waits
// on its state directory's disk (here the timer's lease, which it reads
// first: a FIFO no one writes, so its read never ends, as on a disk
// that stopped answering) ends within a few seconds of SIGTERM, saying
// it stopped while starting and what the start waited for; it served
// nothing, so nothing acknowledged is lost.
func TestAPrimaryWhoseStartHangsStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	path := writeSessionConfig(t, dir, startupSession(dir))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	lease := filepath.Join(mkdir(t, site.PairStateDir(cfg)), "timer.json")
	if err := syscall.Mkfifo(lease, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := duplexCommand("primary", "--config", path, "--log-level", "info")
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// The start says it has waited on its disk once a step has taken 5 s.
	for end := time.Now().Add(30 * time.Second); !strings.Contains(log.String(), "the start has waited on its disk"); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("the primary exited before its start waited (%v):\n%s", err, log.String())
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("the primary's start does not say it waits on its disk after 30 s:\n%s", log.String())
		}
	}
	endsOnSIGTERMWhileStarting(t, "primary", cmd, log, exited, lease)
}

// TestASecondaryWhoseStartHangsStopsOnSIGTERM: a secondary whose start
// waits on its disk (here its state file, a FIFO no one writes, so its
// read never ends, as on a disk that stopped answering) ends within a
// few seconds of SIGTERM, exit status 1, saying it stopped while
// starting and what the start waited for: it served nothing, and the
// journal is as a kill would leave it.
func TestASecondaryWhoseStartHangsStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	path := writeSessionConfig(t, dir, startupSession(dir))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	state := site.StatePath(cfg)
	mkdir(t, filepath.Dir(state))
	if err := syscall.Mkfifo(state, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := duplexCommand("secondary", "--config", path, "--log-level", "debug")
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// The start reads the state file once it has opened the volumes:
	// their images made, it goes on to the FIFO, where it waits.
	images := filepath.Join(dir, "secondary")
	for end := time.Now().Add(30 * time.Second); !fifoOpenedBy(cmd.Process.Pid); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("the secondary exited before its start waited (%v):\n%s", err, log.String())
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("the secondary's start does not wait on %s after 30 s (the volumes in %s):\n%s", state, images, log.String())
		}
	}
	endsOnSIGTERMWhileStarting(t, "secondary", cmd, log, exited, state)
}

// endsOnSIGTERMWhileStarting signals a daemon whose start hangs and wants
// it ended within a few seconds, exit status 1 (it never ran), its last
// words saying it stopped while starting and naming what the start waited
// for, and nothing served.
func endsOnSIGTERMWhileStarting(t *testing.T, who string, cmd *exec.Cmd, log *syncBuffer, exited <-chan error, waitedFor string) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	signalled := time.Now()
	const bound = 5 * time.Second
	select {
	case err := <-exited:
		t.Logf("exited %s after SIGTERM: %v", time.Since(signalled).Round(time.Millisecond), err)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
			t.Errorf("the %s stopped while starting exited %v, want status %d: it did not run", who, err, exitFailure)
		}
	case <-time.After(bound):
		t.Fatalf("the %s whose start hangs has not exited %s after SIGTERM:\n%s", who, bound, log.String())
	}
	out := log.String()
	t.Logf("the %s stopped while starting:\n%s", who, out)
	for _, want := range []string{"stopped while starting", waitedFor} {
		if !strings.Contains(out, "duplex: ") || !strings.Contains(out[strings.LastIndex(out, "duplex: "):], want) {
			t.Errorf("the %s's last words do not say %q:\n%s", who, want, out)
		}
	}
	if strings.Contains(out, who+" started") {
		t.Errorf("the %s served, its start hung:\n%s", who, out)
	}
}

// fifoOpenedBy says whether process pid waits to open a FIFO (the one the
// test made, the only one it opens): a thread of it blocked in the
// kernel's FIFO open.
func fifoOpenedBy(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
	for _, w := range tasks {
		// The kernel's name of the wait differs between versions.
		if b, err := os.ReadFile(w); err == nil && (strings.Contains(string(b), "fifo_open") || strings.Contains(string(b), "wait_for_partner")) {
			return true
		}
	}
	return false
}

// startHungOnFIFO starts duplex with args, whose start is to wait on the
// FIFO fifo (made here, no one writes it, as on a disk that stopped
// answering), and returns it once a thread of it waits to open it.
func startHungOnFIFO(t *testing.T, who, fifo string, args ...string) (*exec.Cmd, *syncBuffer, <-chan error) {
	t.Helper()
	mkdir(t, filepath.Dir(fifo))
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := duplexCommand(args...)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for end := time.Now().Add(30 * time.Second); !fifoOpenedBy(cmd.Process.Pid); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("the %s exited before its start waited (%v):\n%s", who, err, log.String())
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("the %s's start does not wait on %s after 30 s:\n%s", who, fifo, log.String())
		}
	}
	return cmd, log, exited
}

// TestADemoWhosePrimaryStartHangsStopsOnSIGTERM: the demo's primary,
// whose start waits on its state directory's disk (the timer's lease,
// read first), is given up on SIGTERM as duplex primary's is: the demo
// ends within a few seconds, exit status 1, saying it stopped while
// starting and naming the lease, its secondary stopped with it.
func TestADemoWhosePrimaryStartHangsStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	session := config.Demo(dir)
	portBase{n: 0, set: true}.apply(session)
	cfg, err := writeDemoConfig(session)
	if err != nil {
		t.Fatal(err)
	}
	lease := filepath.Join(site.PairStateDir(cfg), "timer.json")
	cmd, log, exited := startHungOnFIFO(t, "demo", lease, "demo", "--dir", dir, "--port-base", "0", "--no-workload", "--log-level", "info")
	endsOnSIGTERMWhileStarting(t, "demo", cmd, log, exited, lease)
}

// TestARecoverWhoseStartHangsStopsOnSIGTERM: duplex recover at a stopped
// secondary whose disk stopped answering (its state file a FIFO) ends
// within a few seconds of SIGTERM, exit status 1, saying it stopped
// while starting and what it waited for: the journal and the volumes are
// as a kill leaves them, and the next recover (or secondary) replays the
// journal again.
func TestARecoverWhoseStartHangsStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	path := writeSessionConfig(t, dir, startupSession(dir))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	state := site.StatePath(cfg)
	cmd, log, exited := startHungOnFIFO(t, "recover", state, "recover", "--config", path)
	endsOnSIGTERMWhileStarting(t, "recover", cmd, log, exited, state)
}
