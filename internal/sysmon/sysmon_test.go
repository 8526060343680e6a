package sysmon

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"duplex/internal/testenv"
)

// TestMain lets the test binary be a daemon that calls KeepAwake and prints
// the GODEBUG it then runs with (SYSMON_DAEMON=1); with SYSMON_DAEMON=name,
// the name the kernel gives it (its comm) before that; with
// SYSMON_DAEMON=removed, it removes its own binary first, as an upgrade in
// place replaces it; with SYSMON_DAEMON=panic, it panics after it.
func TestMain(m *testing.M) {
	switch os.Getenv("SYSMON_DAEMON") {
	case "panic":
		KeepAwake()
		panic("a daemon's bug")
	case "1":
		KeepAwake()
		fmt.Print(os.Getenv("GODEBUG"))
		os.Exit(0)
	case "name":
		KeepAwake()
		comm, err := os.ReadFile("/proc/self/comm")
		if err != nil {
			fmt.Print(err)
			os.Exit(1)
		}
		fmt.Print(strings.TrimSpace(string(comm)), " ", os.Getenv("GODEBUG"))
		os.Exit(0)
	case "removed":
		// Only the first start finds it.
		_ = os.Remove(os.Args[0])
		KeepAwake()
		fmt.Print(os.Getenv("GODEBUG"))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// daemonEnv is the environment of a daemon started with GOMAXPROCS procs and
// GODEBUG godebug, in SYSMON_DAEMON mode mode.
func daemonEnv(mode, procs, godebug string) []string {
	return append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, "GOMAXPROCS=")
	}), "SYSMON_DAEMON="+mode, "GODEBUG="+godebug, "GOMAXPROCS="+procs)
}

func TestWithAwakeAddsScheduleTraceUnlessSet(t *testing.T) {
	cases := []struct {
		env     []string
		want    []string
		changed bool
	}{
		{[]string{"HOME=/root"}, []string{"HOME=/root", "GODEBUG=" + Awake}, true},
		{[]string{"GODEBUG=", "A=1"}, []string{"GODEBUG=" + Awake, "A=1"}, true},
		{[]string{"GODEBUG=madvdontneed=1"}, []string{"GODEBUG=madvdontneed=1," + Awake}, true},
		// The operator's own setting stands, 0 (the runtime's default) too.
		{[]string{"GODEBUG=schedtrace=0"}, []string{"GODEBUG=schedtrace=0"}, false},
		{[]string{"GODEBUG=gctrace=1,schedtrace=500"}, []string{"GODEBUG=gctrace=1,schedtrace=500"}, false},
	}
	for _, c := range cases {
		got, changed := withAwake(c.env)
		if !slices.Equal(got, c.want) || changed != c.changed {
			t.Errorf("withAwake(%q) = %q, %v; want %q, %v", c.env, got, changed, c.want, c.changed)
		}
	}
}

func TestADaemonRunsWithTheMonitorAwake(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("a daemon re-executes itself only on Linux")
	}
	for _, c := range []struct{ procs, godebug, want string }{
		{"2", "madvdontneed=1", "madvdontneed=1," + Awake},
		{"2", "schedtrace=0", "schedtrace=0"},
		// One processor keeps the runtime's deep sleep.
		{"1", "madvdontneed=1", "madvdontneed=1"},
	} {
		cmd := exec.Command(os.Args[0])
		cmd.Env = daemonEnv("1", c.procs, c.godebug)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got := string(out); got != c.want {
			t.Errorf("GOMAXPROCS %s, GODEBUG %q: after the start %q, want %q", c.procs, c.godebug, got, c.want)
		}
	}
}

// TestADaemonKeepsItsName checks that the daemon run again is still named
// as it was started (ps, top, pgrep and the journal show that name): the
// kernel names a process after the last element of the path it executes,
// which for /proc/self/exe would be "exe". Started through a symbolic link,
// the daemon has the link's name.
func TestADaemonKeepsItsName(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("a daemon re-executes itself only on Linux")
	}
	bin, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "duplexd")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{os.Args[0], link} {
		cmd := exec.Command(path)
		cmd.Env = daemonEnv("name", "2", "")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", path, err, out)
		}
		name := filepath.Base(path)
		name = name[:min(len(name), 15)] // the kernel's TASK_COMM_LEN less its NUL
		if got, want := string(out), name+" "+Awake; got != want {
			t.Errorf("started as %s, after the start: %q, want %q", path, got, want)
		}
	}
}

// TestADaemonWhoseBinaryWasReplacedRunsItAwake checks that a daemon whose
// binary was removed (or replaced, as an upgrade in place does) after it
// started runs that binary again, and with the monitor awake.
func TestADaemonWhoseBinaryWasReplacedRunsItAwake(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("a daemon re-executes itself only on Linux")
	}
	bin := filepath.Join(t.TempDir(), "daemon")
	if err := copyFile(bin, os.Args[0]); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = daemonEnv("removed", "2", "")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := string(out); got != Awake {
		t.Errorf("after the start: GODEBUG %q, want %q", got, Awake)
	}
	if _, err := os.Stat(bin); !os.IsNotExist(err) {
		t.Errorf("the daemon's binary is still there (%v): the test removed nothing", err)
	}
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestWhatTheSettingPrints checks the lines the setting prints on stderr, as
// README tells operators: one at the start on a host up more than 2^31-1 ms
// (a time namespace puts the monotonic clock there), and the scheduler's
// state in detail before a crash's panic message.
func TestWhatTheSettingPrints(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("a daemon re-executes itself only on Linux")
	}
	t.Run("start on a host up 25.5 days", func(t *testing.T) {
		if os.Geteuid() != 0 {
			testenv.Missing(t, "a time namespace (unshare --time) needs root: run the tests as root")
		}
		testenv.NeedTool(t, "unshare", "util-linux")
		cmd := exec.Command("unshare", "--time", "--monotonic", "2200000", "--fork", os.Args[0])
		cmd.Env = daemonEnv("1", "2", "")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %s", err, stderr.String())
		}
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if stdout.String() != Awake || len(lines) != 1 || !strings.HasPrefix(lines[0], "SCHED 0ms: gomaxprocs=2 ") {
			t.Errorf("GODEBUG %q, stderr:\n%s\nwant %q and one line SCHED 0ms: gomaxprocs=2 ...", stdout.String(), stderr.String(), Awake)
		}
	})
	t.Run("crash", func(t *testing.T) {
		cmd := exec.Command(os.Args[0])
		cmd.Env = daemonEnv("panic", "2", "")
		out, _ := cmd.CombinedOutput()
		sched, g1, msg := bytes.Index(out, []byte("SCHED ")), bytes.Index(out, []byte("\n  G1: status=")), bytes.Index(out, []byte("panic: a daemon's bug"))
		if cmd.ProcessState.ExitCode() != 2 || sched < 0 || g1 < sched || msg < g1 {
			t.Errorf("exit %d, output:\n%s\nwant exit 2 with the scheduler's state, a line per goroutine, before the panic message", cmd.ProcessState.ExitCode(), out)
		}
	})
}
