package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
)

// TestMain lets the test binary act as the duplex binary (DUPLEX_MAIN=1), so
// tests can run real processes and signal them. With DUPLEX_DENY_SCHED=1 it
// is refused a thread's scheduling policy (see denySchedSetattr), and sets
// the primary's as main does.
func TestMain(m *testing.M) {
	if os.Getenv("DUPLEX_MAIN") == "1" {
		if os.Getenv("DUPLEX_DENY_SCHED") == "1" {
			if err := denySchedSetattr(); err != nil {
				fmt.Fprintln(os.Stderr, "deny sched_setattr:", err)
				os.Exit(exitFailure)
			}
			if c, ok := lookup(os.Args[1:]); ok {
				daemonPolicy(c)
			}
		}
		if path := os.Getenv(hangRenamesEnv); path != "" {
			hangRenamesOnto(path)
		}
		os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func duplexCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "DUPLEX_MAIN=1")
	return cmd
}

// TestDemoRunsAndVerifies runs `duplex demo` as a newcomer would, lets its
// workload run, stops it with Ctrl-C (SIGINT) and expects a clean exit with a
// verification summary: every secondary volume identical, no violations. The
// config it wrote must drive the other commands. It listens on ports the
// system picks (--port-base 0), so that test runs side by side, and a demo
// someone runs, never collide.
func TestDemoRunsAndVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	dir := t.TempDir()
	cmd, out, pw := startDemo(t, "demo", "--dir", dir, "--port-base", "0")

	// The written config drives status against the running demo.
	cfgPath := filepath.Join(dir, "duplex.toml")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("demo config: %v", err)
	}
	for _, a := range []string{cfg.Primary.NBD, cfg.Primary.Control, cfg.Primary.Secondary, cfg.Secondary.Listen, cfg.Secondary.Control, cfg.Secondary.NBD} {
		if strings.HasSuffix(a, ":0") || slices.Contains([]string{"10809", "10810", "7401", "7402", "7403"}, a[strings.LastIndex(a, ":")+1:]) {
			t.Errorf("demo --port-base 0 wrote address %s to its config, want the port the system picked", a)
		}
	}
	if !strings.Contains(out.String(), "nbd://"+cfg.Primary.NBD+"/") {
		t.Errorf("the demo does not show the primary NBD address it listens on (%s):\n%s", cfg.Primary.NBD, out.String())
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
	// Its status line, every second, to a pipe: one line each.
	for deadline := time.Now().Add(30 * time.Second); strings.Count(out.String(), "consistent as of") < 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no status lines:\n%s", out.String())
		}
	}

	text := interruptDemo(t, cmd, out, pw, 4, "the secondary")
	if strings.Contains(text, "\r") {
		t.Errorf("the demo wrote carriage returns to a pipe:\n%q", text)
	}
	for _, l := range strings.Split(text, "\n") {
		if i := strings.Index(l, "consistent as of"); i > 0 && strings.Contains(l, "groups") {
			t.Errorf("a status line does not start its line: %q", l)
		}
	}
}

// startDemo runs duplex with args (a demo) and returns once it says its
// workload runs; out collects what it prints, pw is to be closed after the
// process exits.
func startDemo(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer, *io.PipeWriter) {
	t.Helper()
	cmd := duplexCommand(args...)
	out := &syncBuffer{}
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(out, pw)
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
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
	case <-time.After(2 * time.Minute):
		t.Fatalf("demo did not start:\n%s", out.String())
	}
	return cmd, out, pw
}

// TestDemoCoupledRunsAndVerifies runs `duplex demo --coupled`: an embedded
// etcd and two coupled sessions, db and app, with a workload whose writes
// depend on each other across both. It prints the master time and each
// member's time every second, its sessions' configs drive duplex couple
// list, and Ctrl-C ends it cleanly with both secondaries identical to their
// primaries and no dependent write held without the one before it.
func TestDemoCoupledRunsAndVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	dir := t.TempDir()
	cmd, out, pw := startDemo(t, "demo", "--coupled", "--dir", dir, "--port-base", "0")
	for _, want := range []string{"Duplex coupled demo: sessions db and app in coupled group \"demo\"", "etcd            http://127.0.0.1:",
		"session db ", "session app "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the coupled demo does not say %q:\n%s", want, out.String())
		}
	}
	for _, name := range []string{"db", "app"} {
		cfg, err := config.Load(filepath.Join(dir, name, "duplex.toml"))
		if err != nil {
			t.Fatalf("demo config of %s: %v", name, err)
		}
		if cfg.Session != name || cfg.Coupling.Group != "demo" || len(cfg.Coupling.Etcd) != 1 || strings.HasSuffix(cfg.Primary.NBD, ":0") {
			t.Errorf("%s's config: session %q, coupling %+v, primary NBD %s", name, cfg.Session, cfg.Coupling, cfg.Primary.NBD)
		}
	}
	// The member's line, once both published: the master time and each
	// member's time.
	line := regexp.MustCompile(`master time \d\d:\d\d:\d\d\.\d{3}  lag +\S+  members: app \d\d:\d\d:\d\d\.\d{3}, db \d\d:\d\d:\d\d\.\d{3}`)
	for deadline := time.Now().Add(time.Minute); len(line.FindAllString(out.String(), -1)) < 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no status lines with the master time and both members' times:\n%s", out.String())
		}
	}
	list, err := duplexCommand("couple", "list", "--config", filepath.Join(dir, "db", "duplex.toml")).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "coupled group demo: 2 members") || !strings.Contains(string(list), "master consistency time 20") {
		t.Errorf("couple list against the running demo: %v\n%s", err, list)
	}

	interruptDemo(t, cmd, out, pw, 8, "the secondaries together")
}

// interruptDemo stops a demo with Ctrl-C (SIGINT), expects a clean exit
// with every one of its volumes verified identical and a clean
// dependent-write check on the secondaries (checked says which), and
// returns what it printed.
func interruptDemo(t *testing.T, cmd *exec.Cmd, out *syncBuffer, pw *io.PipeWriter, volumes int, checked string) string {
	t.Helper()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	pw.Close()
	text := out.String()
	if err != nil {
		t.Fatalf("demo exit: %v\n%s", err, text)
	}
	if n := strings.Count(text, "secondary identical to primary"); n != volumes {
		t.Errorf("%d volumes verified identical, want %d:\n%s", n, volumes, text)
	}
	if !strings.Contains(text, "dependent-write check on "+checked+": 0 violations") {
		t.Errorf("no clean dependent-write check on %s:\n%s", checked, text)
	}
	return text
}

// TestDemoCoupledPorts: with --coupled, --port-base N gives db N..N+4, app
// N+5..N+9 and etcd N+10 and N+11; without it, db has the plain demo's
// ports and app the next ones; past 65524 it is a usage error.
func TestDemoCoupledPorts(t *testing.T) {
	addrs := func(c *config.Config) []string {
		return []string{c.Primary.NBD, c.Secondary.NBD, c.Primary.Control, c.Secondary.Listen, c.Secondary.Control, c.Primary.Secondary}
	}
	base := portBase{n: 20000, set: true}
	if got, want := addrs(coupledDemoSession(t.TempDir(), "app", "", base, 1)),
		[]string{"127.0.0.1:20005", "127.0.0.1:20006", "127.0.0.1:20007", "127.0.0.1:20008", "127.0.0.1:20009", "127.0.0.1:20008"}; !slices.Equal(got, want) {
		t.Errorf("--port-base 20000: app's addresses %v, want %v", got, want)
	}
	if c, p, _ := coupledDemoEtcdURLs(base); c != "http://127.0.0.1:20010" || p != "http://127.0.0.1:20011" {
		t.Errorf("--port-base 20000: etcd at %s, %s", c, p)
	}
	if got, want := addrs(coupledDemoSession(t.TempDir(), "app", "", portBase{}, 1)),
		[]string{"127.0.0.1:10811", "127.0.0.1:10812", "127.0.0.1:7404", "127.0.0.1:7405", "127.0.0.1:7406", "127.0.0.1:7405"}; !slices.Equal(got, want) {
		t.Errorf("default ports: app's addresses %v, want %v", got, want)
	}
	if got := addrs(coupledDemoSession(t.TempDir(), "db", "", portBase{}, 0)); got[0] != "127.0.0.1:10809" || got[4] != "127.0.0.1:7403" {
		t.Errorf("default ports: db's addresses %v, want the plain demo's", got)
	}
	code, out, errs := runCmd("demo", "--coupled", "--port-base", "65525", "--dir", t.TempDir())
	if code != exitUsage || out != "" || !strings.Contains(errs, "want 0, or a port from 1 to 65524") {
		t.Errorf("demo --coupled --port-base 65525: exit %d, stdout %q, stderr %q; want exit 2", code, out, errs)
	}
}

// TestDemoPortBase: --port-base N moves every listener of the demo session
// to N..N+4, the primary dialing the secondary's; outside 0..65531 it is a
// usage error.
func TestDemoPortBase(t *testing.T) {
	c := config.Demo(t.TempDir())
	portBase{n: 20000, set: true}.apply(c)
	got := []string{c.Primary.NBD, c.Secondary.NBD, c.Primary.Control, c.Secondary.Listen, c.Secondary.Control, c.Primary.Secondary}
	want := []string{"127.0.0.1:20000", "127.0.0.1:20001", "127.0.0.1:20002", "127.0.0.1:20003", "127.0.0.1:20004", "127.0.0.1:20003"}
	if !slices.Equal(got, want) {
		t.Errorf("--port-base 20000: addresses %v, want %v", got, want)
	}
	d := config.Demo(t.TempDir())
	portBase{}.apply(d)
	if d.Primary.NBD != "127.0.0.1:10809" || d.Secondary.Control != "127.0.0.1:7403" {
		t.Errorf("without --port-base the demo moved its ports: %s, %s", d.Primary.NBD, d.Secondary.Control)
	}
	for _, bad := range []string{"65532", "-1", "x"} {
		code, out, errs := runCmd("demo", "--port-base", bad, "--dir", t.TempDir())
		if code != exitUsage || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "duplex: demo: ") {
			t.Errorf("demo --port-base %s: exit %d, stdout %q, stderr %q; want exit 2 and one line", bad, code, out, errs)
		}
	}
}

type syncBuffer = testenv.LogBuffer

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := config.Load("../../examples/session.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckSecurity(); err != nil {
		t.Fatal(err)
	}
	if got := len(cfg.VolumeNames()); got != 3 {
		t.Fatalf("example has %d volumes, want 3", got)
	}
}
