package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"duplex/config"
)

// TestMain lets the test binary act as the duplex binary (DUPLEX_MAIN=1), so
// tests can run real processes and signal them.
func TestMain(m *testing.M) {
	if os.Getenv("DUPLEX_MAIN") == "1" {
		os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func duplexCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "DUPLEX_MAIN=1")
	return cmd
}

func demoPortsFree(t *testing.T) {
	for _, a := range []string{"127.0.0.1:10809", "127.0.0.1:10810", "127.0.0.1:7401", "127.0.0.1:7402", "127.0.0.1:7403"} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Skipf("demo address %s is in use here: %v", a, err)
		}
		ln.Close()
	}
}

// TestDemoRunsAndVerifies runs `duplex demo` as a newcomer would, lets its
// workload run, stops it with Ctrl-C (SIGINT) and expects a clean exit with a
// verification summary: every secondary volume identical, no violations. The
// config it wrote must drive the other commands.
func TestDemoRunsAndVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	demoPortsFree(t)
	dir := t.TempDir()
	cmd := duplexCommand("demo", "--dir", dir)
	out := &syncBuffer{}
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(out, pw)
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Running a dependent-write workload") {
				ready <- true
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("demo did not start:\n%s", out.String())
	}

	// The written config drives status against the running demo.
	cfgPath := filepath.Join(dir, "duplex.toml")
	if _, err := config.Load(cfgPath); err != nil {
		t.Fatalf("demo config: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := duplexCommand("status", "--config", cfgPath)
		b, err := st.CombinedOutput()
		if err == nil && strings.Contains(string(b), "role:primary link:connected") && strings.Contains(string(b), "role:secondary link:connected") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed both sites connected: %v\n%s", err, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)

	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	pw.Close()
	text := out.String()
	if err != nil {
		t.Fatalf("demo exit: %v\n%s", err, text)
	}
	if n := strings.Count(text, "secondary identical to primary"); n != 4 {
		t.Errorf("%d volumes verified identical, want 4:\n%s", n, text)
	}
	if !strings.Contains(text, "dependent-write check on the secondary: 0 violations") {
		t.Errorf("no clean dependent-write check:\n%s", text)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := config.Load("../../examples/session.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckLinkSecurity(); err != nil {
		t.Fatal(err)
	}
	if got := len(cfg.VolumeNames()); got != 3 {
		t.Fatalf("example has %d volumes, want 3", got)
	}
}
