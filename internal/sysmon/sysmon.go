// Package sysmon keeps the Go runtime's monitor thread out of its deep sleep
// in the site daemons, where its wake-ups cost more per 4 KiB write than
// anything the method does beside the volume's pwrite and the link's send.
//
// The runtime's monitor thread (sysmon) goes to a deep sleep whenever every
// processor of the process is idle, and the next ordinary system call wakes
// it and has it poll every 20 µs for at least a millisecond after. A site
// daemon goes idle between requests many times a second, and each of its
// volume pwrites is such a call: the monitor's wake-ups and its 20 µs sleeps
// (each a context switch, 10–20 µs of CPU on a loaded virtual machine) were
// 11–16 % of the primary's and the secondary's CPU per 4 KiB write
// (bench/RESULTS.md). The one switch that keeps the monitor out of its deep
// sleep is GODEBUG's schedtrace, read only at the process's start: with it
// the monitor backs off to a 10 ms poll while it finds nothing to do, and a
// system call no longer restarts its 20 µs polls.
//
// With a single processor (GOMAXPROCS 1, as a daemon pinned to one CPU
// gets) the deep sleep is kept: there a system call holds the process's only
// processor, and the monitor's 20 µs polls after the call woke it are what
// hand the processor on when the call takes long (the CPU taken by another
// process meanwhile); backed off to 10 ms, they let a write at queue depth 1
// wait behind it (pinned, fio's median completion 35-43 µs against 5-26,
// at half the IOPS). With two or more the other processors run on.
//
// GOMAXPROCS is read at the start only: a daemon pinned to one CPU while it
// runs (the runtime lowers GOMAXPROCS to 1 within a second) keeps the
// monitor awake until it is restarted. A CPU quota (a cgroup's) leaves the
// runtime at least two processors.
//
// schedtrace also prints one line of scheduler state to stderr every that
// many milliseconds of the monotonic clock, the first once the clock (the
// host's uptime) has passed that many: at its largest, 2^31-1 ms (24.86
// days), that is a line at every start on a host up longer than that, then
// one every 24.86 days of the daemon's run. And a crash (a panic, a fatal
// error, SIGQUIT) prints the scheduler's state in detail, a line per
// processor, thread and goroutine, before the panic's message. An operator
// who sets schedtrace in GODEBUG keeps that setting (schedtrace=0 keeps the
// runtime's deep sleep).
package sysmon

import (
	"os"
	"runtime"
	"strings"
)

// Awake is the GODEBUG setting KeepAwake adds.
const Awake = "schedtrace=2147483647"

// KeepAwake re-executes the running binary with Awake added to GODEBUG,
// unless GODEBUG sets schedtrace already or the process has a single
// processor. It returns only if it did not (or could not, which leaves the
// daemon as it was: correct, if costlier per request). A daemon calls it
// first thing in main.
func KeepAwake() {
	if runtime.GOMAXPROCS(0) < 2 {
		return
	}
	if env, changed := withAwake(os.Environ()); changed {
		reexec(env)
	}
}

// withAwake returns env with Awake added to GODEBUG, and whether that
// changed it: not when GODEBUG sets schedtrace already.
func withAwake(env []string) ([]string, bool) {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			out = append(out, kv)
			continue
		}
		for _, s := range strings.Split(v, ",") {
			if strings.HasPrefix(s, "schedtrace=") {
				return env, false
			}
		}
		if v != "" {
			v += ","
		}
		out = append(out, "GODEBUG="+v+Awake)
		found = true
	}
	if !found {
		out = append(out, "GODEBUG="+Awake)
	}
	return out, true
}
