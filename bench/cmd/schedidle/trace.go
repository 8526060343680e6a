package main

import (
	"fmt"
	"strconv"
	"strings"
)

// kind is the scheduler event a line of the trace records.
type kind int

const (
	switchEv  kind = iota + 1 // sched_switch: prev leaves the CPU, next takes it
	wakingEv                  // sched_waking or sched_wakeup_new: pid becomes runnable
	migrateEv                 // sched_migrate_task: pid moves from one CPU's queue to another's
)

// event is one line of `perf script -F pid,tid,cpu,time,event,trace` over
// the scheduler's tracepoints. tgid and tid are the task running on cpu
// when the event fired (for a switch, the task leaving; for a wake-up, the
// waker).
type event struct {
	tgid, tid int
	cpu       int
	t         float64 // seconds
	kind      kind

	pid, prevPID, nextPID int    // the task woken or migrated; the switch's two tasks
	comm, prevComm        string // their names
	nextComm              string
	prevRunnable          bool // the task leaving was preempted, not blocked
	prevDisk              bool // the task leaving waits uninterruptibly (state D: mostly I/O)
	targetCPU             int  // waking: the CPU the task last ran on; migrate: where it goes
}

// parseLine decodes one line. ok is false for a line that is not one of the
// events above (other tracepoints, perf's own messages); err is set for an
// event line that does not hold what its event must.
func parseLine(line string) (ev event, ok bool, err error) {
	f := strings.Fields(line)
	// pid/tid [cpu] time: sched:name: key=value ...
	if len(f) < 5 || !strings.HasPrefix(f[1], "[") || !strings.HasPrefix(f[3], "sched:") {
		return ev, false, nil
	}
	switch strings.TrimSuffix(f[3], ":") {
	case "sched:sched_switch":
		ev.kind = switchEv
	case "sched:sched_waking", "sched:sched_wakeup_new":
		ev.kind = wakingEv
	case "sched:sched_migrate_task":
		ev.kind = migrateEv
	default:
		return ev, false, nil
	}
	tg, td, found := strings.Cut(f[0], "/")
	if !found {
		return ev, false, fmt.Errorf("task %q: want pid/tid", f[0])
	}
	if ev.tgid, err = strconv.Atoi(tg); err != nil {
		return ev, false, fmt.Errorf("task %q: %w", f[0], err)
	}
	if ev.tid, err = strconv.Atoi(td); err != nil {
		return ev, false, fmt.Errorf("task %q: %w", f[0], err)
	}
	if ev.cpu, err = strconv.Atoi(strings.Trim(f[1], "[]")); err != nil {
		return ev, false, fmt.Errorf("cpu %q: %w", f[1], err)
	}
	if ev.t, err = strconv.ParseFloat(strings.TrimSuffix(f[2], ":"), 64); err != nil {
		return ev, false, fmt.Errorf("time %q: %w", f[2], err)
	}
	kv := map[string]string{}
	for _, w := range f[4:] {
		if k, v, found := strings.Cut(w, "="); found {
			// A comm may hold '=' or spaces; the fields that matter
			// here are numbers and a state, which cannot.
			kv[k] = v
		}
	}
	num := func(k string) (int, error) {
		v, found := kv[k]
		if !found {
			return 0, fmt.Errorf("%s: no %s", f[3], k)
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%s: %s: %w", f[3], k, err)
		}
		return n, nil
	}
	switch ev.kind {
	case switchEv:
		if ev.prevPID, err = num("prev_pid"); err != nil {
			return ev, false, err
		}
		if ev.nextPID, err = num("next_pid"); err != nil {
			return ev, false, err
		}
		st, found := kv["prev_state"]
		if !found {
			return ev, false, fmt.Errorf("%s: no prev_state", f[3])
		}
		ev.prevRunnable = strings.HasPrefix(st, "R")
		ev.prevDisk = strings.HasPrefix(st, "D")
		ev.prevComm, ev.nextComm = kv["prev_comm"], kv["next_comm"]
	case wakingEv:
		if ev.pid, err = num("pid"); err != nil {
			return ev, false, err
		}
		if ev.targetCPU, err = num("target_cpu"); err != nil {
			return ev, false, err
		}
		ev.comm = kv["comm"]
	case migrateEv:
		if ev.pid, err = num("pid"); err != nil {
			return ev, false, err
		}
		if ev.targetCPU, err = num("dest_cpu"); err != nil {
			return ev, false, err
		}
		ev.comm = kv["comm"]
	}
	if ev.cpu < 0 || ev.cpu >= maxCPUs || ev.targetCPU < 0 || ev.targetCPU >= maxCPUs {
		return ev, false, fmt.Errorf("%s: cpu out of range", f[3])
	}
	return ev, true, nil
}

// maxCPUs bounds the CPU numbers accepted, so that a corrupt line cannot
// make the tables grow without bound.
const maxCPUs = 4096
