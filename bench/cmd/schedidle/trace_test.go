package main

import (
	"strings"
	"testing"
)

// A two-CPU trace: fio on CPU 0 wakes a primary thread that last ran there
// while CPU 1 is idle; the thread waits behind fio for 100 µs, then runs.
const twoCPUs = `  900/900   [000]   10.000000:       sched:sched_switch: prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=fio next_pid=900 next_prio=120
  0/0   [001]   10.000000:       sched:sched_switch: prev_comm=dup prev_pid=701 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120
  900/900   [000]   10.000010:       sched:sched_waking: comm=dup pid=701 prio=120 target_cpu=000
  900/900   [000]   10.000110:       sched:sched_switch: prev_comm=fio prev_pid=900 prev_prio=120 prev_state=S ==> next_comm=dup next_pid=701 next_prio=120
  700/701   [000]   10.000210:       sched:sched_switch: prev_comm=dup prev_pid=701 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120
`

func TestIdleWhileATaskWaitsElsewhere(t *testing.T) {
	a := newAnalysis(labels{700: "primary"})
	if err := a.read(strings.NewReader(twoCPUs)); err != nil {
		t.Fatal(err)
	}
	near := func(got, want float64) bool { return got > want-1e-9 && got < want+1e-9 }
	if !near(a.idle[1], 210e-6) || !near(a.idleWaiting[1], 100e-6) {
		t.Errorf("cpu 1 idle %v, with a task waiting %v; want 210µs, 100µs", a.idle[1], a.idleWaiting[1])
	}
	if got := a.waitingOn[701]; !near(got, 100e-6) {
		t.Errorf("idle time charged to the waiting thread %v, want 100µs", got)
	}
	if got := a.inFront[[2]int{900, 701}]; !near(got, 100e-6) {
		t.Errorf("fio in front of the thread %v, want 100µs", got)
	}
	if got := a.rqWait[701]; !near(got, 100e-6) || a.rqWaits[701] != 1 {
		t.Errorf("thread's wait on the queue %v over %d waits, want 100µs once", got, a.rqWaits[701])
	}
	if got := a.placed[[3]int{701, 900, 0}]; got != 1 {
		t.Errorf("wake-ups left on the busy CPU while another idled: %d, want 1", got)
	}
	if got := a.disk[701]; got != 0 {
		t.Errorf("a thread that slept in S counted as blocked in D: %v", got)
	}
	if g := a.group(701); g != "primary" {
		t.Errorf("group %q, want primary (its process's label)", g)
	}
	if g := a.group(900); g != "fio" {
		t.Errorf("group %q, want fio", g)
	}
}

func TestMigratedWakeup(t *testing.T) {
	tr := twoCPUs[:strings.Index(twoCPUs, "  900/900   [000]   10.000110")] +
		"  900/900   [000]   10.000010: sched:sched_migrate_task: comm=dup pid=701 prio=120 orig_cpu=0 dest_cpu=1\n" +
		"  0/0   [001]   10.000020:       sched:sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=dup next_pid=701 next_prio=120\n"
	a := newAnalysis(nil)
	if err := a.read(strings.NewReader(tr)); err != nil {
		t.Fatal(err)
	}
	if got := a.placed[[3]int{701, 900, 1}]; got != 1 {
		t.Errorf("moved wake-ups %d, want 1", got)
	}
	if a.idleWaiting[1] != 0 {
		t.Errorf("cpu 1 idle with the thread queued on it counted as waiting elsewhere: %v", a.idleWaiting[1])
	}
}

func TestBlockedInD(t *testing.T) {
	tr := strings.Replace(twoCPUs, "prev_pid=701 prev_prio=120 prev_state=S ==> next_comm=swapper/1", "prev_pid=701 prev_prio=120 prev_state=D ==> next_comm=swapper/1", 1)
	a := newAnalysis(nil)
	if err := a.read(strings.NewReader(tr)); err != nil {
		t.Fatal(err)
	}
	if got := a.disk[701]; got < 10e-6-1e-9 || got > 10e-6+1e-9 {
		t.Errorf("blocked in D %v, want 10µs (from the trace's start to its wake-up)", got)
	}
}

func TestParseLineRefuses(t *testing.T) {
	for _, l := range []string{
		"  x/1 [000] 1.0: sched:sched_waking: comm=a pid=1 prio=120 target_cpu=000",
		"  1/1 [000] 1.0: sched:sched_waking: comm=a pid=1 prio=120",
		"  1/1 [000] 1.0: sched:sched_waking: comm=a pid=1 prio=120 target_cpu=99999",
		"  1/1 [000] 1.0: sched:sched_switch: prev_comm=a prev_pid=1 ==> next_comm=b next_pid=2",
		"  1 [000] 1.0: sched:sched_migrate_task: comm=a pid=1 dest_cpu=1",
	} {
		if _, ok, err := parseLine(l); ok || err == nil {
			t.Errorf("parseLine(%q): ok %v, err %v; want an error", l, ok, err)
		}
	}
	if _, ok, err := parseLine("  1/1 [000] 1.0: sched:sched_stat_runtime: comm=a pid=1 runtime=5 [ns]"); ok || err != nil {
		t.Errorf("another tracepoint: ok %v, err %v; want skipped", ok, err)
	}
}

func FuzzParseLine(f *testing.F) {
	for _, l := range strings.Split(twoCPUs, "\n") {
		f.Add(l)
	}
	f.Add("  1/1 [000] 1.0: sched:sched_migrate_task: comm=a pid=1 prio=120 orig_cpu=0 dest_cpu=1")
	f.Fuzz(func(t *testing.T, line string) {
		ev, ok, err := parseLine(line)
		if ok && err != nil {
			t.Fatalf("ok with an error: %v", err)
		}
		if ok {
			a := newAnalysis(nil)
			a.add(ev)
			a.add(ev)
		}
	})
}
