// Command perf is Duplex's performance suite; bench/run.sh builds and runs
// it. It measures, on one machine with both sites on loopback:
//
//   - primary-side cost: the same fio jobs against nbdkit and a Duplex
//     primary pinned with fio to one CPU, the secondary alone on the other;
//   - write cost: the same fio jobs against nbdkit's file plugin and against
//     a Duplex primary replicating to a secondary, alternated A B A B;
//   - lag: the secondary's duplex_lag_seconds, read from its /metrics every
//     100 ms, idle and under fio at 25, 50 and 75 % of saturation;
//   - apply throughput: the secondary's sustained apply rate under
//     saturation, beside fio's sequential write bandwidth on the same file
//     system;
//   - memory: peak RSS of both daemons under sustained load with a 64 MiB
//     sidefile limit;
//   - scale: start time and RSS of sessions of 1, 16, 128 and 1,024 volumes, and
//     the idle cost of cutting, shipping and journaling groups as they grow.
//
// Output is Markdown, ready for bench/RESULTS.md.
package main

import (
	"context"
	"duplex/bench/harness"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// settings of a run.
type settings struct {
	duplex  string // binary
	compare string // primary, write, lag and scale sections: a second build, alternated with the first
	out     string // work directory
	rounds  int
	quick   bool
	runtime time.Duration // of each write-cost job
	long    time.Duration // of each sustained run (lag, apply, memory)
	ramp    time.Duration // fio ramp time, excluded from its figures
	volSize int64         // of the write-cost volume and nbdkit image
	idle    time.Duration // scale: idle period measured
	// scaleSizes are the scale section's sessions, in volumes.
	scaleSizes   []int
	scaleProfile bool // profile each idle period
	// scaleWindows is the number of windows the idle period is measured
	// in, each with the host's steal over it.
	scaleWindows int
	// writeJobs, if not empty, are the write-cost jobs run (by name);
	// writeProfile saves both Duplex daemons' CPU profiles over each
	// Duplex run of them.
	writeJobs    []string
	writeProfile bool
	// writeCached starts the write section's runs with every file in the
	// page cache (-write-cache cached) rather than dropped from it.
	writeCached bool
	// lagRates are the lag section's fio rates, in % of saturation (0:
	// idle); lagRun is each run's length; lagSat, if not zero, is the
	// saturation bandwidth in bytes/s, not measured then.
	lagRates []int
	lagRun   time.Duration
	lagSat   float64
	// lagSettle: the file system is synced before every lag run.
	lagSettle bool
	// primarySettle: the file system is synced before every primary-side
	// run.
	primarySettle bool
	// burstRepeats is the number of bursts each server runs in a round of
	// the primary section, its median kept; burstCached starts every
	// burst with the image read whole into the page cache.
	burstRepeats int
	burstCached  bool
	// floor, if set, is an nbdfloor binary served beside nbdkit in the
	// primary-side section: Duplex's NBD server without replication.
	floor string
	// primaryJobs, if set, are the primary-side jobs run (by name).
	primaryJobs []string
	// sidefile, if not zero, is the sidefile limit in bytes of the session
	// the write, lag and apply sections share (default sidefileLimit).
	sidefile int64
	// burstReserve, if not zero, is the burst_reserve in bytes of the
	// first build's burst session in the primary-side section (the
	// compared build's keeps its own default: an older one may not know
	// the key).
	burstReserve int64
	// warmup is the number of primary-side rounds run before those
	// counted.
	warmup int
	// subsystems is the number of subsystems, one volume each, of the
	// session the write, lag and apply sections share; the write and lag
	// jobs write the first one's volume, the apply section's every one.
	subsystems int
	// primaryDir, if set, holds the primary's volume of the session the
	// write, lag and apply sections share (say /dev/shm: the primary's
	// writes off the disk the secondary's journal and volume are on).
	primaryDir string
	w          io.Writer
}

var sections = []string{"primary", "write", "lag", "apply", "memory", "scale"}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("perf", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duplex := fs.String("duplex", "bench/out/duplex", "duplex binary")
	out := fs.String("out", "bench/out", "work directory (images, logs, fio output)")
	rounds := fs.Int("rounds", 3, "write-cost rounds (each runs every job on both servers)")
	quick := fs.Bool("quick", false, "short runtimes and small volumes: proves the suite works, measures little")
	only := fs.String("sections", strings.Join(sections, ","), "sections to run, comma-separated")
	scaleSizes := fs.String("scale", "1,16,128,1024", "scale section: the session sizes, in volumes, comma-separated")
	idle := fs.Duration("idle", 0, "scale section: the idle period measured (default 10s, 4s with -quick)")
	scaleWindows := fs.Int("scale-windows", 5, "scale section: the idle period is measured in this many windows, each with the host's steal (a window with steal under 5 % is clean)")
	scaleProfile := fs.Bool("scale-profile", false, "scale section: save CPU profiles of both daemons over each idle period (scale-N-R-primary.pprof, scale-N-R-secondary.pprof in the work directory, R the round, with -compare the build too)")
	writeCache := fs.String("write-cache", "dropped", "write section: the state of the servers' files at each run's start: dropped (synced and dropped from the page cache) or cached (synced, dropped, then read whole: the writes land in cached pages)")
	writeJobsFlag := fs.String("write-jobs", "", "write section: the jobs run, comma-separated (default: all)")
	writeProfile := fs.Bool("write-profile", false, "write section: save CPU profiles of both Duplex daemons over each Duplex run (write-JOB-rN-primary.pprof, write-JOB-rN-secondary.pprof in the work directory)")
	compare := fs.String("compare", "", "primary, write, lag and scale sections: a second duplex `binary` (say, the build before a change), run in the same rounds")
	writeRuntime := fs.Duration("write-runtime", 0, "write section: the length of each run after its ramp (default 20s, 3s with -quick): shorter runs fit more rounds in one sitting")
	lagRates := fs.String("lag-rates", "0,25,50,75", "lag section: fio's rates in % of the saturation bandwidth (0: idle), comma-separated")
	lagRun := fs.Duration("lag-runtime", 0, "lag section: the length of each run (default 10s, 4s with -quick)")
	lagSat := fs.Float64("lag-saturation", 0, "lag section: the saturation bandwidth of 4 KiB random writes at qd16 in MiB/s (default: measured)")
	floor := fs.String("floor", "", "primary section: an nbdfloor `binary` (go build ./bench/cmd/nbdfloor), Duplex's NBD server over the image without replication, run in the same rounds")
	pjobs := fs.String("primary-jobs", "", "primary section: the jobs to run, comma-separated (default all: randwrite-4k-qd1,randwrite-4k-qd16,randread-4k-qd16,write-1m-qd4-burst,write-1m-qd4)")
	sidefileMiB := fs.Int64("sidefile-limit", 0, "write, lag and apply sections: the sessions' sidefile limit in MiB (default 64; a `duplex demo` session has 256 per subsystem)")
	burstReserve := fs.Int64("burst-reserve", 0, "primary section: the burst_reserve in MiB of the first build's burst session (0: left out; the compared build's is always left out)")
	warmup := fs.Int("warmup", 0, "primary section: rounds run first and not counted (a fresh session's first burst populates its sidefile's buffers)")
	subsystems := fs.Int("subsystems", 1, "write, lag and apply sections: the subsystems of their session, one volume each (a `duplex demo` session has 2); the write and lag jobs write the first one's volume, the apply section's every one, a job each sharing its depth of 4")
	primaryDir := fs.String("primary-dir", "", "write, lag and apply sections: the `directory` of the primary's volume (default in -out; say /dev/shm: the primary's writes off the secondary's disk; a directory perf-PID is made in it and removed at the end)")
	lagSettle := fs.Bool("lag-settle", true, "lag section: sync the work directory's file system (syncfs) before every run, so that none meets the writeback of what the bench wrote before it (the prefill, the saturation run, the runs before)")
	primarySettle := fs.Bool("primary-settle", true, "primary section: sync the work directory's file system (syncfs) before every run, so that none meets the writeback of what the runs before it left dirty (a Duplex run's secondary volume, the prefill's copies)")
	burstRepeats := fs.Int("burst-repeats", 5, "primary section: bursts each server runs in a round, alternated burst by burst, the median (by IOPS) kept as the round's")
	burstCache := fs.String("burst-cache", "cached", "primary section: the image's state at each burst's start: cached (synced, dropped, then read whole: the burst overwrites pages the cache holds) or dropped (synced and dropped: the burst takes new pages, whose cost on this virtual machine depends on how long ago they were freed)")
	secLevel := fs.String("secondary-log-level", "", "every session's secondary: its --log-level (debug: one line per group applied with the wall time of each step, from arrival to applied, and the checkpoints; read with bench/cmd/lagtrace)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *secLevel != "" {
		secondaryFlags = []string{"--log-level", *secLevel}
	}
	if *sidefileMiB < 0 || *burstReserve < 0 {
		fmt.Fprintln(stderr, "perf: -sidefile-limit and -burst-reserve must be numbers of MiB")
		return 2
	}
	s := settings{duplex: *duplex, compare: *compare, out: *out, rounds: *rounds, quick: *quick, w: stdout,
		runtime: 20 * time.Second, long: 30 * time.Second, ramp: 2 * time.Second, volSize: 1 << 30, idle: 10 * time.Second}
	if s.quick {
		s.runtime, s.long, s.ramp, s.volSize, s.idle = 3*time.Second, 8*time.Second, 0, 256<<20, 4*time.Second
	}
	if s.rounds < 1 {
		fmt.Fprintln(stderr, "perf: -rounds must be at least 1")
		return 2
	}
	s.scaleProfile = *scaleProfile
	if *scaleWindows < 1 {
		fmt.Fprintln(stderr, "perf: -scale-windows must be at least 1")
		return 2
	}
	s.scaleWindows = *scaleWindows
	if *writeRuntime > 0 {
		if *writeRuntime < 2*time.Second {
			fmt.Fprintln(stderr, "perf: -write-runtime must be at least 2s")
			return 2
		}
		s.runtime = *writeRuntime
	}
	s.sidefile = *sidefileMiB << 20
	s.burstReserve = *burstReserve << 20
	s.warmup = max(*warmup, 0)
	if *subsystems < 1 {
		fmt.Fprintln(stderr, "perf: -subsystems must be at least 1")
		return 2
	}
	s.subsystems = *subsystems
	if *primaryDir != "" {
		s.primaryDir = filepath.Join(*primaryDir, fmt.Sprintf("perf-%d", os.Getpid()))
		defer os.RemoveAll(s.primaryDir)
	}
	if *pjobs != "" {
		for _, j := range strings.Split(*pjobs, ",") {
			if !slices.ContainsFunc(primaryJobs, func(pj primaryJob) bool { return pj.name == j }) {
				fmt.Fprintf(stderr, "perf: -primary-jobs: unknown job %q\n", j)
				return 2
			}
			s.primaryJobs = append(s.primaryJobs, j)
		}
	}
	s.writeProfile = *writeProfile
	switch *writeCache {
	case "dropped":
	case "cached":
		s.writeCached = true
	default:
		fmt.Fprintf(stderr, "perf: -write-cache: %q is neither dropped nor cached\n", *writeCache)
		return 2
	}
	if *writeJobsFlag != "" {
		for _, j := range strings.Split(*writeJobsFlag, ",") {
			if !slices.ContainsFunc(writeJobs, func(wj writeJob) bool { return wj.name == j }) {
				fmt.Fprintf(stderr, "perf: -write-jobs: unknown job %q\n", j)
				return 2
			}
			s.writeJobs = append(s.writeJobs, j)
		}
	}
	s.lagRun, s.lagSat = 10*time.Second, *lagSat*(1<<20)
	s.lagSettle = *lagSettle
	s.primarySettle = *primarySettle
	s.burstRepeats = *burstRepeats
	switch *burstCache {
	case "cached":
		s.burstCached = true
	case "dropped":
	default:
		fmt.Fprintf(stderr, "perf: -burst-cache: %q is neither cached nor dropped\n", *burstCache)
		return 2
	}
	if s.quick {
		s.lagRun = 4 * time.Second
	}
	if *lagRun > 0 {
		s.lagRun = *lagRun
	}
	for _, f := range strings.Split(*lagRates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n > 100 {
			fmt.Fprintf(stderr, "perf: -lag-rates: %q is not a share of saturation in %%\n", f)
			return 2
		}
		s.lagRates = append(s.lagRates, n)
	}
	if *idle > 0 {
		s.idle = *idle
	}
	for _, f := range strings.Split(*scaleSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(stderr, "perf: -scale: %q is not a number of volumes\n", f)
			return 2
		}
		s.scaleSizes = append(s.scaleSizes, n)
	}
	want := strings.Split(*only, ",")
	for _, w := range want {
		if !slices.Contains(sections, w) {
			fmt.Fprintf(stderr, "perf: unknown section %q (want %s)\n", w, strings.Join(sections, ","))
			return 2
		}
	}
	var err error
	if s.duplex, err = filepath.Abs(s.duplex); err != nil {
		fmt.Fprintln(stderr, "perf:", err)
		return 1
	}
	if *floor != "" {
		if s.floor, err = filepath.Abs(*floor); err != nil {
			fmt.Fprintln(stderr, "perf:", err)
			return 1
		}
	}
	if s.compare != "" {
		if s.compare, err = filepath.Abs(s.compare); err != nil {
			fmt.Fprintln(stderr, "perf:", err)
			return 1
		}
	}
	if err := os.MkdirAll(s.out, 0o755); err != nil {
		fmt.Fprintln(stderr, "perf:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	header(s, args)
	b := &bench{s: s}
	defer b.close()
	for _, sec := range sections {
		if !slices.Contains(want, sec) || ctx.Err() != nil {
			continue
		}
		start := time.Now()
		var err error
		switch sec {
		case "primary":
			err = b.primarySide(ctx)
		case "write":
			err = b.writeCost(ctx)
		case "lag":
			err = b.lag(ctx)
		case "apply":
			err = b.apply(ctx)
		case "memory":
			err = b.memory(ctx)
		case "scale":
			err = b.scale(ctx)
		}
		if err != nil {
			fmt.Fprintf(stderr, "perf: %s: %v\n", sec, err)
			fmt.Fprintf(stdout, "\n**%s failed:** %v\n", sec, err)
			return 1
		}
		fmt.Fprintf(stdout, "\n_(%s took %s; load average now %s)_\n", sec, time.Since(start).Round(time.Second), harness.LoadAvg())
	}
	return 0
}

// header prints what the figures depend on.
func header(s settings, args []string) {
	w := s.w
	fmt.Fprintf(w, "# Duplex benchmark run\n\n")
	fmt.Fprintf(w, "- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- machine: %d CPUs (nproc), %s memory, kernel %s\n", runtime.NumCPU(), memTotal(), readTrim("/proc/sys/kernel/osrelease"))
	fmt.Fprintf(w, "- load average at start: %s\n", harness.LoadAvg())
	fmt.Fprintf(w, "- tools: %s, %s, %s\n", firstLine("fio", "--version"), firstLine("nbdkit", "--version"), runtime.Version())
	fmt.Fprintf(w, "- command: perf %s (rounds %d, quick %v, job runtime %s, sustained runs %s, volume %d MiB)\n",
		strings.Join(args, " "), s.rounds, s.quick, s.runtime, s.long, s.volSize>>20)
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			var kb int64
			fmt.Sscan(f[1], &kb)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func firstLine(cmd string, args ...string) string {
	out, err := exec.Command(cmd, args...).Output()
	if err != nil {
		return cmd + " ?"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
