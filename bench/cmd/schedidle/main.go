// Command schedidle says what a machine's idle CPU time waited for, from a
// scheduler trace: how much of each CPU's idle time passed while a task was
// runnable on another CPU's queue (work there, not taken), whose tasks
// those were, what ran in front of them, and where the tasks woken while
// another CPU was idle were put. It is how the whole-system write cost's
// idle time (bench/RESULTS.md) is taken apart.
//
//	perf sched record -a -o sched.data -- sleep 3      # during the run
//	perf script -i sched.data -F pid,tid,cpu,time,event,trace |
//	    go run ./bench/cmd/schedidle -label PRIMARY_PID=primary -label SECONDARY_PID=secondary
//
// A task is grouped by the -label of its process, else by its name (kernel
// threads without their CPU suffix).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
)

type labels map[int]string

func (l labels) String() string { return fmt.Sprint(map[int]string(l)) }

func (l labels) Set(s string) error {
	p, name, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("label %q: want PID=NAME", s)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return fmt.Errorf("label %q: %w", s, err)
	}
	l[n] = name
	return nil
}

func main() {
	lb := labels{}
	flag.Var(lb, "label", "PID=NAME: group the threads of process PID as NAME (repeatable)")
	flag.Parse()
	a := newAnalysis(lb)
	if err := a.read(os.Stdin); err != nil {
		slog.Error("schedidle", "err", err)
		os.Exit(1)
	}
	a.report(os.Stdout)
}

// pending is a wake-up whose placement is not known yet: the kernel says
// where the task goes by migrating it right after, or not at all.
type pending struct {
	waker     int
	prevBusy  bool // the CPU the task last ran on was running another task
	otherIdle bool // some other CPU was idle
}

type placement struct {
	wakee, waker string
	moved        bool
}

type analysis struct {
	labels labels
	tgid   map[int]int
	comm   map[int]string

	cur    []int           // per CPU: the task running, 0 idle
	queued map[int]int     // runnable tasks not running: their CPU
	since  map[int]float64 // when each became runnable
	pend   map[int]pending

	first, last float64
	started     bool
	lines, bad  int

	idle, idleWaiting []float64
	waitingOn         map[int]float64    // idle time per task waiting elsewhere meanwhile
	inFront           map[[2]int]float64 // idle time per (task running in front, task waiting)
	busy              map[[2]int]float64 // (cpu, task): running time
	rqWait            map[int]float64
	rqWaits           map[int]int
	placed            map[[3]int]int  // (wakee, waker, moved) for wake-ups with the previous CPU busy and another idle
	asleep            map[int]float64 // when each task blocked, for those blocked in state D
	disk              map[int]float64 // time blocked in state D per task
	wakeups           map[int]int
}

func newAnalysis(l labels) *analysis {
	return &analysis{labels: l, tgid: map[int]int{}, comm: map[int]string{}, queued: map[int]int{},
		since: map[int]float64{}, pend: map[int]pending{}, waitingOn: map[int]float64{},
		inFront: map[[2]int]float64{}, busy: map[[2]int]float64{}, rqWait: map[int]float64{},
		rqWaits: map[int]int{}, placed: map[[3]int]int{}, wakeups: map[int]int{},
		asleep: map[int]float64{}, disk: map[int]float64{}}
}

func (a *analysis) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		ev, ok, err := parseLine(sc.Text())
		if err != nil {
			a.bad++
			continue
		}
		if ok {
			a.lines++
			a.add(ev)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the trace: %w", err)
	}
	if a.lines == 0 {
		return fmt.Errorf("no scheduler events in the trace (%d lines not understood)", a.bad)
	}
	return nil
}

func (a *analysis) grow(cpu int) {
	for len(a.cur) <= cpu {
		a.cur = append(a.cur, 0)
		a.idle = append(a.idle, 0)
		a.idleWaiting = append(a.idleWaiting, 0)
	}
}

// advance accounts the time up to t to the state the events so far left.
func (a *analysis) advance(t float64) {
	if !a.started {
		a.first, a.last, a.started = t, t, true
		return
	}
	dt := t - a.last
	if dt <= 0 {
		return
	}
	a.last = t
	for c, task := range a.cur {
		if task != 0 {
			a.busy[[2]int{c, task}] += dt
			continue
		}
		a.idle[c] += dt
		var waiting []int
		for p, qc := range a.queued {
			if qc != c {
				waiting = append(waiting, p)
			}
		}
		if len(waiting) == 0 {
			continue
		}
		a.idleWaiting[c] += dt
		share := dt / float64(len(waiting))
		for _, p := range waiting {
			a.waitingOn[p] += share
			a.inFront[[2]int{a.cur[a.queued[p]], p}] += share
		}
	}
}

func (a *analysis) add(ev event) {
	a.grow(max(ev.cpu, ev.targetCPU))
	a.advance(ev.t)
	if ev.tid != 0 {
		a.tgid[ev.tid] = ev.tgid
	}
	switch ev.kind {
	case wakingEv:
		a.comm[ev.pid] = ev.comm
		a.wakeups[ev.pid]++
		if s, ok := a.asleep[ev.pid]; ok {
			a.disk[ev.pid] += ev.t - s
			delete(a.asleep, ev.pid)
		}
		if a.running(ev.pid) {
			return
		}
		a.queued[ev.pid] = ev.targetCPU
		a.since[ev.pid] = ev.t
		otherIdle := false
		for c, task := range a.cur {
			if c != ev.targetCPU && task == 0 {
				otherIdle = true
			}
		}
		a.pend[ev.pid] = pending{waker: ev.tid, prevBusy: a.cur[ev.targetCPU] != 0, otherIdle: otherIdle}
	case migrateEv:
		a.comm[ev.pid] = ev.comm
		if _, ok := a.queued[ev.pid]; ok {
			a.queued[ev.pid] = ev.targetCPU
		}
		a.resolve(ev.pid, true)
	case switchEv:
		a.comm[ev.prevPID], a.comm[ev.nextPID] = ev.prevComm, ev.nextComm
		a.resolve(ev.prevPID, false)
		a.resolve(ev.nextPID, false)
		if ev.prevPID != 0 && ev.prevRunnable {
			a.queued[ev.prevPID] = ev.cpu
			a.since[ev.prevPID] = ev.t
		} else {
			delete(a.queued, ev.prevPID)
			if ev.prevPID != 0 && ev.prevDisk {
				a.asleep[ev.prevPID] = ev.t
			}
		}
		if _, ok := a.queued[ev.nextPID]; ok {
			if s, ok := a.since[ev.nextPID]; ok {
				a.rqWait[ev.nextPID] += ev.t - s
				a.rqWaits[ev.nextPID]++
			}
			delete(a.queued, ev.nextPID)
		}
		a.cur[ev.cpu] = ev.nextPID
	}
}

func (a *analysis) running(pid int) bool {
	for _, t := range a.cur {
		if t == pid && pid != 0 {
			return true
		}
	}
	return false
}

// resolve records where a pending wake-up went: moved by a migration right
// after it, or left where it last ran.
func (a *analysis) resolve(pid int, moved bool) {
	p, ok := a.pend[pid]
	if !ok {
		return
	}
	delete(a.pend, pid)
	if p.prevBusy && p.otherIdle {
		m := 0
		if moved {
			m = 1
		}
		a.placed[[3]int{pid, p.waker, m}]++
	}
}

// group names the task's group: its process's label, else its name.
// byGroup sums per-task times into their tasks' groups.
func (a *analysis) byGroup(perTask map[int]float64) map[string]row {
	g := map[string]row{}
	for p, v := range perTask {
		r := g[a.group(p)]
		r.key, r.v = a.group(p), r.v+v
		g[r.key] = r
	}
	return g
}

func (a *analysis) group(tid int) string {
	if tid == 0 {
		return "idle"
	}
	if l, ok := a.labels[a.tgid[tid]]; ok {
		return l
	}
	if l, ok := a.labels[tid]; ok {
		return l
	}
	c := a.comm[tid]
	if i := strings.IndexByte(c, '/'); i > 0 {
		c = c[:i]
	}
	if c == "" {
		c = "?"
	}
	return c
}

type row struct {
	key string
	v   float64
	n   int
}

func sorted(m map[string]row) []row {
	rs := make([]row, 0, len(m))
	for _, r := range m {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].v != rs[j].v {
			return rs[i].v > rs[j].v
		}
		return rs[i].key < rs[j].key
	})
	return rs
}

func (a *analysis) report(w io.Writer) {
	T := a.last - a.first
	fmt.Fprintf(w, "traced %.3f s, %d events (%d lines not understood)\n\n", T, a.lines, a.bad)
	if T <= 0 {
		return
	}
	fmt.Fprintln(w, "cpu  idle s  idle %  of it with a task runnable on another CPU's queue, s")
	for c := range a.cur {
		fmt.Fprintf(w, "%3d  %6.3f  %6.1f  %6.3f\n", c, a.idle[c], 100*a.idle[c]/T, a.idleWaiting[c])
	}
	g := a.byGroup(a.waitingOn)
	fmt.Fprintln(w, "\nidle time with a task runnable elsewhere, by the waiting task's group (s)")
	for _, r := range sorted(g) {
		if r.v >= 0.001 {
			fmt.Fprintf(w, "  %-16s %.3f\n", r.key, r.v)
		}
	}
	g = map[string]row{}
	for k, v := range a.inFront {
		key := a.group(k[0]) + " in front of " + a.group(k[1])
		r := g[key]
		r.key, r.v = key, r.v+v
		g[key] = r
	}
	fmt.Fprintln(w, "\n... by what ran on the waiting task's CPU meanwhile (s)")
	for _, r := range sorted(g) {
		if r.v >= 0.001 {
			fmt.Fprintf(w, "  %-40s %.3f\n", r.key, r.v)
		}
	}
	fmt.Fprintln(w, "\nbusy share of each CPU by group (%)")
	for c := range a.cur {
		g = map[string]row{}
		for k, v := range a.busy {
			if k[0] == c {
				r := g[a.group(k[1])]
				r.key, r.v = a.group(k[1]), r.v+v
				g[r.key] = r
			}
		}
		var parts []string
		for _, r := range sorted(g) {
			if r.v/T >= 0.005 {
				parts = append(parts, fmt.Sprintf("%s %.1f", r.key, 100*r.v/T))
			}
		}
		fmt.Fprintf(w, "  cpu %d: %s\n", c, strings.Join(parts, ", "))
	}
	g = map[string]row{}
	for p, v := range a.rqWait {
		r := g[a.group(p)]
		r.key, r.v, r.n = a.group(p), r.v+v, r.n+a.rqWaits[p]
		g[r.key] = r
	}
	fmt.Fprintln(w, "\nrunnable but not running, by group: s summed over tasks, times, mean µs")
	for _, r := range sorted(g) {
		if r.v >= 0.005 {
			fmt.Fprintf(w, "  %-16s %7.3f %7d %7.1f\n", r.key, r.v, r.n, 1e6*r.v/float64(max(r.n, 1)))
		}
	}
	g = a.byGroup(a.disk)
	fmt.Fprintln(w, "\nblocked uninterruptibly (state D, mostly I/O), by group: s summed over tasks")
	for _, r := range sorted(g) {
		if r.v >= 0.005 {
			fmt.Fprintf(w, "  %-16s %7.3f\n", r.key, r.v)
		}
	}
	wk := map[string]row{}
	for p, n := range a.wakeups {
		r := wk[a.group(p)]
		r.key, r.n = a.group(p), r.n+n
		wk[r.key] = r
	}
	type pk struct{ wakee, waker string }
	stayed, moved := map[pk]int{}, map[pk]int{}
	for k, n := range a.placed {
		key := pk{a.group(k[0]), a.group(k[1])}
		if k[2] == 1 {
			moved[key] += n
		} else {
			stayed[key] += n
		}
	}
	keys := map[pk]bool{}
	for k := range stayed {
		keys[k] = true
	}
	for k := range moved {
		keys[k] = true
	}
	ks := make([]pk, 0, len(keys))
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if stayed[ks[i]] != stayed[ks[j]] {
			return stayed[ks[i]] > stayed[ks[j]]
		}
		return ks[i].wakee+ks[i].waker < ks[j].wakee+ks[j].waker
	})
	fmt.Fprintln(w, "\nwake-ups whose task last ran on a busy CPU while another CPU was idle:")
	fmt.Fprintln(w, "  wakee            waker              left on the busy CPU  moved   (all wake-ups of the wakee's group)")
	for _, k := range ks {
		if stayed[k]+moved[k] >= 10 {
			fmt.Fprintf(w, "  %-16s %-18s %20d %6d   (%d)\n", k.wakee, k.waker, stayed[k], moved[k], wk[k.wakee].n)
		}
	}
}
