package sysmon

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestMain lets the test binary be a daemon that calls KeepAwake and prints
// the GODEBUG it then runs with (SYSMON_DAEMON=1).
func TestMain(m *testing.M) {
	if os.Getenv("SYSMON_DAEMON") == "1" {
		KeepAwake()
		fmt.Print(os.Getenv("GODEBUG"))
		os.Exit(0)
	}
	os.Exit(m.Run())
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
		cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
			return strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, "GOMAXPROCS=")
		}), "SYSMON_DAEMON=1", "GODEBUG="+c.godebug, "GOMAXPROCS="+c.procs)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got := string(out); got != c.want {
			t.Errorf("GOMAXPROCS %s, GODEBUG %q: after the start %q, want %q", c.procs, c.godebug, got, c.want)
		}
	}
}
