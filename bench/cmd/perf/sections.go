package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"duplex/bench/fiojson"
	"duplex/bench/harness"
	"duplex/control"
)

// The write-cost jobs, run unchanged against both servers.
type writeJob struct {
	name, rw, bs string
	qd           int
}

var writeJobs = []writeJob{
	{"randwrite-4k-qd1", "randwrite", "4k", 1},
	{"randwrite-4k-qd16", "randwrite", "4k", 16},
	{"write-1m-qd4", "write", "1M", 4},
	{"randread-4k-qd16", "randread", "4k", 16},
}

// sidefileLimit is the sidefile limit of the bench's sessions unless
// -sidefile-limit says otherwise for the whole-system ones (write, lag,
// apply): small enough that the sustained 1 MiB jobs are paced to the
// secondary within a run.
const sidefileLimit = 64 << 20

// sidefileLimit is the limit of the session the write, lag and apply
// sections share.
func (b *bench) sidefileLimit() int64 {
	if b.s.sidefile > 0 {
		return b.s.sidefile
	}
	return sidefileLimit
}

// nbdArgs are fio's options for one job through its nbd engine: d of
// measurement after ramp (excluded from fio's figures).
func (b *bench) nbdArgs(name, uri, rw, bs string, qd int, d, ramp time.Duration, extra ...string) []string {
	args := []string{"--name=" + name, "--ioengine=nbd", "--uri=" + uri, "--rw=" + rw, "--bs=" + bs,
		fmt.Sprintf("--iodepth=%d", qd), fmt.Sprintf("--size=%d", b.s.volSize),
		"--time_based", fmt.Sprintf("--runtime=%d", int(d.Seconds())),
		// Fresh random offsets every run, the same way on both servers.
		"--norandommap", "--randrepeat=0"}
	if ramp > 0 {
		args = append(args, fmt.Sprintf("--ramp_time=%d", int(ramp.Seconds())))
	}
	return append(args, extra...)
}

// setup prefills an image, starts nbdkit on it and a Duplex pair whose
// volume starts as a copy of it.
func (b *bench) setup(ctx context.Context) error {
	if b.pair != nil {
		return nil
	}
	dir := filepath.Join(b.s.out, "write")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	image := filepath.Join(dir, "nbdkit.img")
	if _, err := b.fio(ctx, "prefill", "--name=prefill", "--ioengine=psync", "--rw=write", "--bs=1M",
		fmt.Sprintf("--size=%d", b.s.volSize), "--filename="+image, "--end_fsync=1"); err != nil {
		return err
	}
	var err error
	b.nbdkitImage = image
	if b.nbdkit, b.nbdkitAddr, err = startNbdkit(ctx, dir, image); err != nil {
		return err
	}
	b.pair, err = startPair(ctx, b.s.duplex, filepath.Join(dir, "duplex"),
		harness.Spec{Session: "bench", Subsystems: b.s.subsystems, VolumeSize: b.s.volSize, SidefileLimit: b.sidefileLimit(),
			PrimaryDir: b.s.primaryDir}, image)
	return err
}

func (b *bench) writeCost(ctx context.Context) error {
	if err := b.setup(ctx); err != nil {
		return err
	}
	// images are the files a server's I/O lands in, put in the same
	// settled state before every run; pids are the processes whose CPU
	// the run costs (for Duplex: the primary, then the secondary).
	type server struct {
		name, uri string
		images    []string
		pids      []int
		pair      *pair
	}
	servers := []server{
		{"nbdkit", "nbd://" + b.nbdkitAddr + "/", []string{b.nbdkitImage}, []int{b.nbdkit.Pid()}, nil},
		{"duplex", b.pair.uri(0), []string{b.pair.sess.PrimaryPaths()[0], b.pair.sess.SecondaryPaths()[0]},
			[]int{b.pair.prim.Pid(), b.pair.sec.Pid()}, b.pair},
	}
	if b.s.compare != "" {
		cmp, err := b.comparePair(ctx)
		if err != nil {
			return err
		}
		servers = append(servers, server{"compare", cmp.uri(0), []string{cmp.sess.PrimaryPaths()[0], cmp.sess.SecondaryPaths()[0]},
			[]int{cmp.prim.Pid(), cmp.sec.Pid()}, cmp})
	}
	type result struct {
		job fiojson.Job
		// cpuPer is each of the server's processes' CPU seconds per I/O;
		// fioPer fio's.
		cpuPer []float64
		fioPer float64
		// use is the machine's idle time and disk writes over the run,
		// and for Duplex its pacing and sidefile peak.
		use machineUse
	}
	// res[job][server] holds one result per round.
	res := make([][][]result, len(writeJobs))
	for j := range res {
		res[j] = make([][]result, len(servers))
	}
	var drains []time.Duration
	load := []string{harness.LoadAvg()}
	for r := range b.s.rounds {
		for j, job := range writeJobs {
			if len(b.s.writeJobs) > 0 && !slices.Contains(b.s.writeJobs, job.name) {
				continue
			}
			// A B A B: each job on nbdkit, then on Duplex, round after round,
			// so that a drift in the machine's load hits both alike; the
			// order reversed every other round, so that no server's
			// figure is its place's (runOrder).
			for _, si := range runOrder(len(servers), r) {
				sv := servers[si]
				// Nothing any run left dirty, of this server or another,
				// is written back during this one: each run pays for its
				// own writes only. Without it a run met the kernel's
				// flusher writing back the gigabyte the run before it
				// (the other server's) left dirty, 30 s after it.
				if err := harness.SyncFS(b.s.out); err != nil {
					return err
				}
				if b.s.primaryDir != "" {
					if err := harness.SyncFS(b.s.primaryDir); err != nil {
						return err
					}
				}
				// Both servers start every run in one settled state: an
				// image written just before serves writes several times
				// slower than the same file once written back, which
				// would compare the page cache's state, not the servers.
				// For the read job the served image is then read whole,
				// so that it measures the server rather than the disk.
				for _, img := range sv.images {
					if err := harness.DropCache(img); err != nil {
						return err
					}
					// Cached: the same files, written back and then read
					// whole in pages, so that a run's writes land in pages
					// the cache holds already. A dropped file's every
					// first write takes a page the kernel has just freed,
					// which this virtual machine's balloon reports to the
					// host and the host must fault in again on its first
					// touch: a cost the servers pay per volume, which
					// Duplex has two of and nbdkit one. Read without
					// readahead: a 4 KiB write into the large folios
					// readahead leaves costs many times more (nbdkit: 129
					// µs of CPU a write against 10).
					if b.s.writeCached {
						if err := warmPages(img); err != nil {
							return err
						}
					}
				}
				if job.rw == "randread" && !b.s.writeCached {
					if err := warmCache(sv.images[0]); err != nil {
						return err
					}
				}
				cpu0, err := procCPUs(sv.pids)
				if err != nil {
					return err
				}
				name := fmt.Sprintf("%s-%s-r%d", job.name, sv.name, r+1)
				var profiles sync.WaitGroup
				if b.s.writeProfile && sv.pair != nil {
					// Over the measured part of the run, for where each
					// site's CPU goes per write.
					for _, site := range []struct{ name, ctl string }{{"primary", sv.pair.primCtl()}, {"secondary", sv.pair.secCtl()}} {
						tag := job.name
						if sv.name == "compare" {
							tag += "-compare"
						}
						path := filepath.Join(b.s.out, fmt.Sprintf("write-%s-r%d-%s.pprof", tag, r+1, site.name))
						profiles.Go(func() {
							sleepCtx(ctx, b.s.ramp)
							if err := fetchProfile(ctx, site.ctl, int(b.s.runtime.Seconds())-1, path); err != nil {
								fmt.Fprintf(os.Stderr, "perf: write: %s profile: %v\n", site.name, err)
							}
						})
					}
				}
				// What the primary held back: pacing, waits for room and
				// the sidefile's peak, over the whole run (ramp included).
				primCounters := func() (paced, waited float64) {
					paced, _ = metricValue(ctx, sv.pair.primCtl(), "duplex_pacing_delay_seconds_total")
					waited, _ = metricValue(ctx, sv.pair.primCtl(), "duplex_sidefile_wait_seconds_total")
					return paced, waited
				}
				var paced0, waited0 float64
				var peak *sampler
				if sv.pair != nil {
					paced0, waited0 = primCounters()
					peak = sample(100*time.Millisecond, 0, func() (float64, error) {
						return sidefileBytes(ctx, sv.pair.primCtl())
					})
				}
				m0, t0 := readMachine(), time.Now()
				jobs, fioCPU, err := b.fioCPU(ctx, name, b.nbdArgs(job.name, sv.uri, job.rw, job.bs, job.qd, b.s.runtime, b.s.ramp)...)
				m1, t1 := readMachine(), time.Now()
				profiles.Wait()
				var peaks []float64
				if peak != nil {
					peaks, _ = peak.end()
				}
				if err != nil {
					return err
				}
				ios := max(jobs[0].IOPS*(jobs[0].Runtime+b.s.ramp.Seconds()), 1)
				use := m0.use(m1, t1.Sub(t0), ios)
				if sv.pair != nil {
					paced1, waited1 := primCounters()
					use.paced, use.sidefileWaited = (paced1-paced0)/ios*1e6, (waited1-waited0)/ios*1e6
					if len(peaks) > 0 {
						use.peak = slices.Max(peaks)
					}
				}
				if sv.pair != nil && job.rw != "randread" {
					// The secondary's share of these writes is done once
					// the sidefile is empty: its CPU is read after that.
					d, err := sv.pair.drain(ctx)
					if err != nil {
						return fmt.Errorf("after %s: %w", name, err)
					}
					drains = append(drains, d)
				}
				cpu1, err := procCPUs(sv.pids)
				if err != nil {
					return err
				}
				per := make([]float64, len(cpu0))
				for i := range per {
					per[i] = (cpu1[i] - cpu0[i]).Seconds() / ios
				}
				res[j][si] = append(res[j][si], result{jobs[0], per, fioCPU.Seconds() / ios, use})
			}
		}
		load = append(load, harness.LoadAvg())
	}
	w := b.s.w
	fmt.Fprintf(w, "\n## Write cost: nbdkit file plugin vs Duplex primary (replicating to a secondary on this machine)\n\n")
	fmt.Fprintf(w, "fio --ioengine=nbd, %s per job after %s ramp, %d rounds alternating nbdkit and Duplex (nbdkit first in rounds 1, 3, …, last in rounds 2, 4, …); medians over rounds. "+
		"Volume %d MiB, prefilled; Duplex sidefile limit %d MiB, interval %s. Both sites and fio share the machine's CPUs. "+
		"%s"+
		"CPU/IO is a process's user+system CPU time over the run (for the Duplex secondary, until the sidefile is empty after it) "+
		"divided by the run's I/Os. Load average at the start and after each round: %s.\n\n",
		b.s.runtime, b.s.ramp, b.s.rounds, b.s.volSize>>20, b.sidefileLimit()>>20, b.pair.sess.Config.Interval, b.settledState(), strings.Join(load, " → "))
	if len(servers) > 2 {
		fmt.Fprintf(w, "Two Duplex builds, each its own session, in every round with nbdkit (nbdkit, `job`, `job (compare)` in rounds 1, 3, …; the reverse in rounds 2, 4, …): `%s` (rows `job`), and `%s` (rows `job (compare)`), "+
			"each against the same nbdkit runs.\n\n", b.s.duplex, b.s.compare)
	}
	fmt.Fprintf(w, "| job | nbdkit IOPS | nbdkit MiB/s | nbdkit p99 ms | nbdkit µs CPU/IO | Duplex IOPS | Duplex MiB/s | Duplex p99 ms | "+
		"primary µs CPU/IO | secondary µs CPU/IO | Duplex/nbdkit (median of rounds) | ratio per round |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	jobsOf := func(rs []result) []fiojson.Job {
		var js []fiojson.Job
		for _, r := range rs {
			js = append(js, r.job)
		}
		return js
	}
	cpuOf := func(rs []result, i int) float64 {
		var v []float64
		for _, r := range rs {
			v = append(v, r.cpuPer[i]*1e6)
		}
		return median(v)
	}
	rowName := func(job string, si int) string {
		if servers[si].name == "compare" {
			return job + " (compare)"
		}
		return job
	}
	for j, job := range writeJobs {
		k := jobsOf(res[j][0])
		if len(k) == 0 {
			continue
		}
		for si := 1; si < len(servers); si++ {
			d := jobsOf(res[j][si])
			var ratios []float64
			for r := range k {
				ratios = append(ratios, d[r].IOPS/k[r].IOPS)
			}
			fmt.Fprintf(w, "| %s | %.0f | %.1f | %.2f | %.1f | %.0f | %.1f | %.2f | %.1f | %.1f | **%.2f** | %s |\n", rowName(job.name, si),
				median(field(k, iops)), median(field(k, mibps)), median(field(k, p99))*1e3, cpuOf(res[j][0], 0),
				median(field(d, iops)), median(field(d, mibps)), median(field(d, p99))*1e3, cpuOf(res[j][si], 0), cpuOf(res[j][si], 1),
				median(ratios), joinf(ratios, "%.2f"))
			if job.name == "randwrite-4k-qd16" && si == 1 {
				b.satRand = median(field(d, func(j fiojson.Job) float64 { return j.BW }))
			}
		}
	}
	// The CPU a write costs each side, round by round: what nbdkit's rate
	// swinging with the moment (the host's steal, its pages' first touch)
	// leaves steady, and what bounds the ratio when both CPUs are busy.
	fmt.Fprintf(w, "\nCPU a write, round by round: each side's processes (nbdkit and fio; Duplex's primary, secondary and fio: "+
		"user+system, as above, fio's from its rusage, ramp included) and the whole machine's busy CPU over fio's run "+
		"(/proc/stat, everything but idle, iowait and the host's steal: the kernel's threads too). "+
		"The CPU ratios are nbdkit's CPU a write over Duplex's: the IOPS ratio the two CPUs would allow if both runs kept them "+
		"equally busy.\n\n")
	fmt.Fprintf(w, "A round is clean when the host took less than %.0f %% of the CPUs (steal) in both of its runs. Under steal every "+
		"process's CPU a write grows (nbdkit's and fio's, at 2.5 context switches a request, two to three times; Duplex's about "+
		"1.5 times), so a round with steal in one run or both measures the host: judge by the clean rounds' medians.\n\n", 100*cleanSteal)
	fmt.Fprintf(w, "| job | round | nbdkit IOPS | Duplex IOPS | IOPS ratio | nbdkit µs/IO (nbdkit + fio) | Duplex µs/IO (primary + secondary + fio) | "+
		"processes' CPU ratio | machine busy µs/IO nbdkit / Duplex | machine CPU ratio | busy %% nbdkit / Duplex | steal %% nbdkit / Duplex | clean |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---|---|---:|---|---:|---|---|---|\n")
	for j, job := range writeJobs {
		k := res[j][0]
		if len(k) == 0 || job.rw == "randread" {
			continue
		}
		for si := 1; si < len(servers); si++ {
			d := res[j][si]
			// Every round's ratios, and those of the clean rounds.
			type ratios struct{ iops, proc, mach, kIOPS, dIOPS, kp, dp []float64 }
			var all, clean ratios
			add := func(rs *ratios, ir, pr, mr, ki, di, kp, dp float64) {
				rs.iops, rs.proc, rs.mach = append(rs.iops, ir), append(rs.proc, pr), append(rs.mach, mr)
				rs.kIOPS, rs.dIOPS, rs.kp, rs.dp = append(rs.kIOPS, ki), append(rs.dIOPS, di), append(rs.kp, kp), append(rs.dp, dp)
			}
			for r := range k {
				kp := (k[r].cpuPer[0] + k[r].fioPer) * 1e6
				dp := (d[r].cpuPer[0] + d[r].cpuPer[1] + d[r].fioPer) * 1e6
				km, dm := k[r].use.busyPerIO*1e6, d[r].use.busyPerIO*1e6
				ir := d[r].job.IOPS / k[r].job.IOPS
				ok := k[r].use.ok && d[r].use.ok && k[r].use.steal < cleanSteal && d[r].use.steal < cleanSteal
				add(&all, ir, kp/dp, km/dm, k[r].job.IOPS, d[r].job.IOPS, kp, dp)
				mark := "✗"
				if ok {
					add(&clean, ir, kp/dp, km/dm, k[r].job.IOPS, d[r].job.IOPS, kp, dp)
					mark = "✓"
				}
				busy := func(u machineUse) float64 { return 100 * (1 - u.idle - u.iowait - u.steal) }
				fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.2f | %.1f (%.1f + %.1f) | %.1f (%.1f + %.1f + %.1f) | %.2f | %.1f / %.1f | %.2f | %.0f / %.0f | %.1f / %.1f | %s |\n",
					rowName(job.name, si), r+1, k[r].job.IOPS, d[r].job.IOPS, ir,
					kp, k[r].cpuPer[0]*1e6, k[r].fioPer*1e6,
					dp, d[r].cpuPer[0]*1e6, d[r].cpuPer[1]*1e6, d[r].fioPer*1e6,
					kp/dp, km, dm, km/dm, busy(k[r].use), busy(d[r].use), 100*k[r].use.steal, 100*d[r].use.steal, mark)
			}
			fmt.Fprintf(w, "| %s | median, all %d | %.0f | %.0f | %.2f | %.1f | %.1f | %.2f | | %.2f | | | |\n", rowName(job.name, si), len(all.iops),
				median(all.kIOPS), median(all.dIOPS), median(all.iops), median(all.kp), median(all.dp), median(all.proc), median(all.mach))
			if len(clean.iops) > 0 {
				fmt.Fprintf(w, "| %s | **median, clean %d** | %.0f | %.0f | **%.2f** | %.1f | %.1f | **%.2f** | | **%.2f** | | | |\n", rowName(job.name, si), len(clean.iops),
					median(clean.kIOPS), median(clean.dIOPS), median(clean.iops), median(clean.kp), median(clean.dp), median(clean.proc), median(clean.mach))
			} else {
				fmt.Fprintf(w, "| %s | no clean round | | | | | | | | | | | |\n", rowName(job.name, si))
			}
		}
	}
	// Where the time that is neither a server's nor fio's went: the CPUs
	// idle (a server waiting on a timer, the disk or its peer), the disks,
	// and the primary's pacing, which delays writes once the sidefile
	// passes its pacing start while the secondary holds acknowledgements
	// back.
	useOf := func(rs []result, f func(machineUse) float64) float64 {
		var v []float64
		for _, r := range rs {
			if r.use.ok {
				v = append(v, f(r.use))
			}
		}
		if len(v) == 0 {
			return math.NaN()
		}
		return median(v)
	}
	fmt.Fprintf(w, "\nThe machine over the same runs (medians): CPU idle and iowait as a share of both CPUs' time (/proc/stat), "+
		"disk write requests completed per I/O and the disks' busy time per second of the run (/proc/diskstats, whole disks), "+
		"and for Duplex the primary's pacing delay and wait for sidefile room per write (its metrics, over the run) "+
		"and the largest sidefile seen, sampled every 100 ms (pacing starts at %d %% of the %d MiB limit).\n\n",
		b.pair.sess.Config.Primary.PacingStart, b.sidefileLimit()>>20)
	fmt.Fprintf(w, "| job | nbdkit idle %% | nbdkit iowait %% | nbdkit disk writes/IO | nbdkit disk busy | "+
		"Duplex idle %% | Duplex iowait %% | Duplex disk writes/IO | Duplex disk busy | pacing µs/IO | sidefile wait µs/IO | sidefile peak MiB (per round) |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for j, job := range writeJobs {
		k := res[j][0]
		if len(k) == 0 {
			continue
		}
		for si := 1; si < len(servers); si++ {
			d := res[j][si]
			var peaks []float64
			for _, r := range d {
				peaks = append(peaks, r.use.peak/(1<<20))
			}
			fmt.Fprintf(w, "| %s | %.1f | %.1f | %.2f | %.2f | %.1f | %.1f | %.2f | %.2f | %.1f | %.1f | %s |\n", rowName(job.name, si),
				100*useOf(k, func(u machineUse) float64 { return u.idle }), 100*useOf(k, func(u machineUse) float64 { return u.iowait }),
				useOf(k, func(u machineUse) float64 { return u.writesPerIO }), useOf(k, func(u machineUse) float64 { return u.diskBusy }),
				100*useOf(d, func(u machineUse) float64 { return u.idle }), 100*useOf(d, func(u machineUse) float64 { return u.iowait }),
				useOf(d, func(u machineUse) float64 { return u.writesPerIO }), useOf(d, func(u machineUse) float64 { return u.diskBusy }),
				useOf(d, func(u machineUse) float64 { return u.paced }), useOf(d, func(u machineUse) float64 { return u.sidefileWaited }),
				joinf(peaks, "%.1f"))
		}
	}
	if len(drains) > 0 {
		fmt.Fprintf(w, "\nAfter each Duplex write job the suite waited for the sidefile to empty (everything journaled at the secondary) "+
			"before the next job: median %s, max %s.\n", medianDur(drains).Round(time.Millisecond), slices.Max(drains).Round(time.Millisecond))
	}
	return nil
}

// cleanSteal is the share of the CPUs the host may take (steal) in a run
// of a clean round of the write section: above it a run's figures measure
// the host's use of the machine more than the servers'.
const cleanSteal = 0.05

// procCPUs reads the CPU time each of pids has used.
func procCPUs(pids []int) ([]time.Duration, error) {
	var ts []time.Duration
	for _, pid := range pids {
		t, err := harness.ProcCPU(pid)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// saturation measures Duplex's bandwidth for 4 KiB random writes at qd16
// when the write-cost section did not run.
func (b *bench) saturation(ctx context.Context) error {
	if b.satRand > 0 {
		return nil
	}
	if err := b.setup(ctx); err != nil {
		return err
	}
	jobs, err := b.fio(ctx, "saturation-randwrite-4k-qd16", b.nbdArgs("randwrite-4k-qd16", b.pair.uri(0), "randwrite", "4k", 16, b.s.runtime, b.s.ramp)...)
	if err != nil {
		return err
	}
	b.satRand = jobs[0].BW
	_, err = b.pair.drain(ctx)
	return err
}

// sampler reads a value every so often until stopped.
type sampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	vals []float64
	errs int
}

func sample(every time.Duration, skip int, read func() (float64, error)) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for n := 0; ; n++ {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			v, err := read()
			s.mu.Lock()
			if err != nil {
				s.errs++
			} else if n >= skip {
				s.vals = append(s.vals, v)
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// sidefileBytes reads the primary's sidefile fill from its status, over a
// connection kept open between samples. The run's CPU per write counts the
// primary's side of every sample, ten a second: a scrape of /metrics (a new
// connection each time, gzip, the process collector reading /proc) cost the
// primary about 2.5 ms of CPU, a status over a kept connection 0.15 ms.
func sidefileBytes(ctx context.Context, ctl string) (float64, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := harness.FetchRunning(cctx, control.Endpoint{Addr: ctl})
	if err != nil {
		return 0, err
	}
	if st.SidefileBytes == nil {
		return 0, fmt.Errorf("status from %s has no sidefile_bytes", ctl)
	}
	return float64(*st.SidefileBytes), nil
}

func (s *sampler) end() ([]float64, int) {
	close(s.stop)
	<-s.done
	return s.vals, s.errs
}

func errNote(errs int) string {
	if errs == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d failed)", errs)
}

func (b *bench) apply(ctx context.Context) error {
	if err := b.setup(ctx); err != nil {
		return err
	}
	// The disk is shared with whatever else runs here, so its bandwidth
	// moves between runs: each round measures the physical limit (fio's
	// synced sequential write on the same file system) and then the
	// secondary's apply rate, right after each other, and the ratio is
	// taken per round.
	run := b.s.long / 2
	var rounds []applyRound
	var plain fiojson.Job
	profile := filepath.Join(b.s.out, "apply-secondary.pprof")
	psyncFile := filepath.Join(b.s.out, "write", "psync.dat")
	psync := func(name string, extra string) (fiojson.Job, error) {
		defer os.Remove(psyncFile)
		jobs, err := b.fio(ctx, name, "--name=psync-seq-write", "--ioengine=psync", "--rw=write", "--bs=1M",
			fmt.Sprintf("--size=%d", b.s.volSize), "--filename="+psyncFile, "--time_based",
			fmt.Sprintf("--runtime=%d", int(run.Seconds())), extra)
		if err != nil {
			return fiojson.Job{}, err
		}
		return jobs[0], nil
	}
	for r := range b.s.rounds {
		limitJob, err := psync(fmt.Sprintf("psync-fdatasync4-%d", r), "--fdatasync=4")
		if err != nil {
			return err
		}
		res, err := b.applyRun(ctx, r, run, profile)
		if err != nil {
			return err
		}
		res.limit = limitJob.BW / 2
		rounds = append(rounds, res)
	}
	// Plain psync (end_fsync only) measures mostly the page cache: once.
	plain, err := psync("psync-seq-write-0", "--end_fsync=1")
	if err != nil {
		return err
	}
	w := b.s.w
	fmt.Fprintf(w, "\n## Apply throughput at the secondary\n\n")
	fmt.Fprintf(w, "%d rounds, each: fio's sequential write on the secondary's file system (psync, 1 MiB, fdatasync every 4 MiB, %s), "+
		"whose half is the physical limit (the secondary writes every byte twice, journal then volume); then fio write 1 MiB qd4 "+
		"through the Duplex primary, unthrottled, for %s, and the secondary's bytes applied (status bytes_replicated) and both "+
		"daemons' CPU time and the secondary's minor page faults (/proc/PID/stat) from 2 s after its start to 1 s before its end. The primary's sidefile at the end of "+
		"the window says who paces whom: near its %d MiB limit, the primary waits for the secondary. "+
		"Plain psync (end_fsync=1 only, mostly the page cache): %.1f MiB/s.\n\n",
		b.s.rounds, run, run, b.sidefileLimit()>>20, plain.MiBps())
	if b.s.primaryDir != "" {
		fmt.Fprintf(w, "The primary's volume is in %s, off the disk of the secondary's journal and volume.\n\n", b.s.primaryDir)
	}
	if b.s.subsystems > 1 {
		fmt.Fprintf(w, "The session has %d subsystems of one volume each, and fio writes each volume, one job each at a depth of %d.\n\n",
			b.s.subsystems, max(4/b.s.subsystems, 1))
	}
	fmt.Fprintf(w, "| round | limit MiB/s | secondary apply MiB/s | apply / limit | primary fio MiB/s | secondary CPU ms/MiB | secondary faults/MiB | secondary %% CPU | primary CPU ms/MiB | sidefile MiB | load |\n")
	fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	var ratios, secMs, prmMs, secFlt []float64
	for i, r := range rounds {
		fmt.Fprintf(w, "| %d | %.1f | %.1f | %.2f | %.1f | %.2f | %.1f | %.0f | %.2f | %.1f | %s |\n", i+1, r.limit/(1<<20), r.apply/(1<<20),
			r.apply/r.limit, r.primary/(1<<20), r.secMs, r.secFaults, r.secPct, r.prmMs, float64(r.side)/(1<<20), r.load)
		ratios, secMs, prmMs = append(ratios, r.apply/r.limit), append(secMs, r.secMs), append(prmMs, r.prmMs)
		secFlt = append(secFlt, r.secFaults)
	}
	fmt.Fprintf(w, "\nMedian apply / limit **%.2f**; median CPU per applied MiB: secondary %.2f ms, primary %.2f ms; the secondary's "+
		"minor page faults per applied MiB %.1f. Secondary CPU profile of the last round: %s (go tool pprof -top).\n",
		median(ratios), median(secMs), median(prmMs), median(secFlt), profile)
	return nil
}

// applyRound is what one round of the apply section measured.
type applyRound struct {
	limit, apply, primary float64 // bytes/s
	secMs, prmMs          float64 // CPU ms per applied MiB
	secPct                float64 // % of one CPU
	secFaults             float64 // the secondary's minor page faults per applied MiB
	side                  int64   // primary's sidefile bytes at the end of the window
	load                  string
}

// applyRun is one round of the apply section: fio 1 MiB sequential writes
// through the primary for d, the secondary's profile over the window.
func (b *bench) applyRun(ctx context.Context, r int, d time.Duration, profile string) (res applyRound, err error) {
	const warm = 2 * time.Second
	type point struct {
		t              time.Time
		bytes          uint64
		secCPU, prmCPU time.Duration
		side           int64
		secFaults      int64
	}
	var p0, p1 point
	var sampleErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		read := func() point {
			st, err := b.statusCLI(ctx, b.pair.secCtl())
			if err != nil && sampleErr == nil {
				sampleErr = err
			}
			sc, err1 := harness.ProcCPU(b.pair.sec.Pid())
			pc, err2 := harness.ProcCPU(b.pair.prim.Pid())
			sf, err3 := harness.ProcFaults(b.pair.sec.Pid())
			if err := errors.Join(err1, err2, err3); err != nil && sampleErr == nil {
				sampleErr = err
			}
			var side int64
			if pst, err := b.statusCLI(ctx, b.pair.primCtl()); err == nil && pst.SidefileBytes != nil {
				side = *pst.SidefileBytes
			}
			return point{time.Now(), st.BytesReplicate, sc, pc, side, sf}
		}
		sleepCtx(ctx, warm)
		p0 = read()
		// The secondary's CPU profile over the window, for what its CPU
		// does per applied byte.
		if err := fetchProfile(ctx, b.pair.secCtl(), int((d - warm - 2*time.Second).Seconds()), profile); err != nil {
			fmt.Fprintf(os.Stderr, "perf: apply: secondary profile: %v\n", err)
		}
		sleepCtx(ctx, d-time.Since(p0.t)-warm-time.Second)
		p1 = read()
	}()
	// With several subsystems every one's volume is written, each by a
	// job of its own, at the one job's depth shared between them: the
	// secondary then forms its groups from record sets of every subsystem,
	// each frame of the stream bringing one of them.
	n := b.s.subsystems
	var args []string
	for i := range n {
		args = append(args, b.nbdArgs(fmt.Sprintf("write-1m-qd4-%d", i), b.pair.uri(i), "write", "1M", max(4/n, 1), d, 0)...)
	}
	jobs, err := b.fio(ctx, fmt.Sprintf("apply-saturation-%d", r), args...)
	<-done
	if err != nil {
		return res, err
	}
	if sampleErr != nil {
		return res, sampleErr
	}
	res.load = harness.LoadAvg()
	if _, err := b.pair.drain(ctx); err != nil {
		return res, err
	}
	win := p1.t.Sub(p0.t).Seconds()
	mib := float64(p1.bytes-p0.bytes) / (1 << 20)
	res.apply = float64(p1.bytes-p0.bytes) / win
	for _, j := range jobs {
		res.primary += j.BW
	}
	res.secMs = float64((p1.secCPU - p0.secCPU).Microseconds()) / 1000 / mib
	res.prmMs = float64((p1.prmCPU - p0.prmCPU).Microseconds()) / 1000 / mib
	res.secPct = 100 * (p1.secCPU - p0.secCPU).Seconds() / win
	res.secFaults = float64(p1.secFaults-p0.secFaults) / mib
	res.side = p1.side
	return res, nil
}

// fetchProfile saves a CPU profile of secs seconds from a daemon's control
// address.
func fetchProfile(ctx context.Context, ctl string, secs int, path string) error {
	if secs < 1 {
		secs = 1
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", ctl, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func (b *bench) memory(ctx context.Context) error {
	dir := filepath.Join(b.s.out, "memory")
	p, err := startPair(ctx, b.s.duplex, dir, harness.Spec{Session: "bench-mem", VolumeSize: b.s.volSize, SidefileLimit: sidefileLimit}, "")
	if err != nil {
		return err
	}
	defer p.stop()
	var maxSide int64
	s := sample(250*time.Millisecond, 0, func() (float64, error) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		st, err := harness.FetchRunning(cctx, control.Endpoint{Addr: p.primCtl()})
		if err == nil && st.SidefileBytes != nil {
			maxSide = max(maxSide, *st.SidefileBytes)
		}
		return 0, err
	})
	// Both write jobs at once, so the sidefile fills with large and small
	// updates together.
	args := []string{"--ioengine=nbd", "--uri=" + p.uri(0), fmt.Sprintf("--size=%d", b.s.volSize), "--time_based",
		fmt.Sprintf("--runtime=%d", int(b.s.long.Seconds())), "--norandommap", "--randrepeat=0",
		"--name=seq", "--rw=write", "--bs=1M", "--iodepth=4",
		"--name=rand", "--rw=randwrite", "--bs=4k", "--iodepth=16"}
	jobs, err := b.fio(ctx, "memory", args...)
	s.end()
	if err != nil {
		return err
	}
	ppeak, _, err1 := harness.ProcMem(p.prim.Pid())
	speak, _, err2 := harness.ProcMem(p.sec.Pid())
	if err1 != nil || err2 != nil {
		return fmt.Errorf("reading RSS: %v %v", err1, err2)
	}
	var bw float64
	for _, j := range jobs {
		bw += j.BW
	}
	w := b.s.w
	fmt.Fprintf(w, "\n## Memory under sustained load\n\n")
	fmt.Fprintf(w, "Fresh daemons; fio write 1 MiB qd4 and randwrite 4 KiB qd16 at once through the primary for %s (%.1f MiB/s together). "+
		"Peak RSS is VmHWM from /proc/PID/status at the end of the load.\n\n", b.s.long, bw/(1<<20))
	fmt.Fprintf(w, "| sidefile limit | max sidefile_bytes seen | primary peak RSS | secondary peak RSS |\n")
	fmt.Fprintf(w, "|---:|---:|---:|---:|\n")
	fmt.Fprintf(w, "| %s | %s | %s | %s |\n", mib(sidefileLimit), mib(maxSide), mib(ppeak), mib(speak))
	return nil
}

func (b *bench) scale(ctx context.Context) error {
	w := b.s.w
	windows := b.s.scaleWindows
	win := b.s.idle / time.Duration(windows)
	fmt.Fprintf(w, "\n## Scale: sessions of 1, 16, 128 and 1,024 volumes\n\n")
	fmt.Fprintf(w, "8 volumes per subsystem; volumes of 1 MiB, and of 128 KiB in the 1,024-volume session (the same 128 MiB "+
		"a site as the 128-volume one, so the initial copy is no longer) and a sidefile limit of 8 MiB a subsystem (the "+
		"secondary journals at most 1,984 MiB in one group). Start = from launching the secondary until the "+
		"primary reports the link connected and the secondary a consistency time. Copy = from then until every pair is "+
		"duplex (the initial copies of the sparse volumes). Stop = from SIGTERM until the primary exits. RSS (VmRSS) once every pair is duplex. "+
		"Then, after 2 s to settle, %s idle in %d windows of %s: in each, the CPU of each daemon (the sum of its threads' run time, "+
		"/proc/PID/task/*/schedstat, exact where /proc/PID/stat counts 10 ms ticks) per time interval and as %% of one CPU, "+
		"and the share of the machine's CPUs the host took (steal, /proc/stat). A window is clean when the host took under %.0f %%: "+
		"under steal a daemon's CPU per interval grows with it (its caches and timers shared with the host's other guests), so judge "+
		"by the clean windows' medians and quote how many there were. Each session's row gives the medians of its windows; "+
		"journaled groups per second over the whole idle period (idle groups are journaled once a second, the rest only advance "+
		"the consistency time). %d round(s) of every size.\n\n", b.s.idle, windows, win, 100*cleanSteal, b.s.rounds)
	// With -compare, each session size runs once per build and round, the
	// builds alternating, so that both see the same load; each row says
	// which, and the load it started at.
	type build struct{ name, bin string }
	builds := []build{{"", b.s.duplex}}
	if b.s.compare != "" {
		builds = []build{{"new", b.s.duplex}, {"compare", b.s.compare}}
		fmt.Fprintf(w, "Two builds, alternated in every round (new first in rounds 1, 3, …, compare first in rounds 2, 4, …): new = `%s`, compare = `%s`.\n\n", b.s.duplex, b.s.compare)
	}
	fmt.Fprintf(w, "| build | round | load | volumes | subsystems | volume size | start s | copy s | stop s | primary RSS | secondary RSS | "+
		"primary CPU ms per interval | primary %% of a CPU | secondary CPU ms per interval | secondary %% of a CPU | "+
		"journaled groups/s | steal %% (median, max) | clean windows |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
	// Every window of every round, per size and build, for the medians.
	type key struct {
		n     int
		build string
	}
	all := map[key][]scaleWindow{}
	starts := map[key][]float64{}
	for _, n := range b.s.scaleSizes {
		for round := 1; round <= b.s.rounds; round++ {
			for _, bi := range runOrder(len(builds), round-1) {
				bl := builds[bi]
				tag := fmt.Sprintf("-%d", round)
				if bl.name != "" {
					tag = fmt.Sprintf("-%s-%d", bl.name, round)
				}
				name := bl.name
				if name == "" {
					name = "—"
				}
				prefix := fmt.Sprintf("| %s | %d | %s | ", name, round, strings.Fields(harness.LoadAvg())[0])
				row, err := b.scaleSession(ctx, bl.bin, n, tag)
				if err != nil && bl.name == "" && b.s.rounds == 1 {
					return err
				}
				if err != nil {
					// One session that does not settle (its copy outlasting
					// the limit on a loaded machine) loses its row, not the
					// comparison.
					fmt.Fprintf(w, "%s%d | failed: %s |\n", prefix, n, strings.ReplaceAll(err.Error(), "|", "/"))
					continue
				}
				k := key{n, bl.name}
				all[k] = append(all[k], row.windows...)
				starts[k] = append(starts[k], row.startup.Seconds())
				m := summarize(row.windows, row.interval, false)
				var steal []float64
				clean := 0
				for _, x := range row.windows {
					steal = append(steal, 100*x.steal)
					if x.clean() {
						clean++
					}
				}
				fmt.Fprintf(w, "%s%d | %d | %d KiB | %.2f | %.2f | %.2f | %s | %s | %.2f | %.1f | %.2f | %.1f | %.1f | %.1f, %.1f | %d of %d |\n",
					prefix, n, row.subs, row.size>>10, row.startup.Seconds(), row.copy.Seconds(), row.stop.Seconds(),
					mib(row.rssP), mib(row.rssS), m.msP, m.pctP, m.msS, m.pctS,
					row.groups/b.s.idle.Seconds(), median(steal), slices.Max(steal), clean, len(row.windows))
			}
		}
	}
	fmt.Fprintf(w, "\nMedians over every window of every round, and over the clean windows only (steal under %.0f %%): CPU ms per interval "+
		"and %% of one CPU at each site; start s is the median over rounds.\n\n", 100*cleanSteal)
	fmt.Fprintf(w, "| volumes | build | start s | windows | primary ms/interval | secondary ms/interval | clean windows | "+
		"**primary ms/interval, clean** | **primary %% of a CPU, clean** | **secondary ms/interval, clean** | **secondary %% of a CPU, clean** |\n")
	fmt.Fprintf(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range b.s.scaleSizes {
		for _, bl := range builds {
			k := key{n, bl.name}
			ws := all[k]
			if len(ws) == 0 {
				continue
			}
			name := bl.name
			if name == "" {
				name = "—"
			}
			interval := ws[0].interval
			a, c := summarize(ws, interval, false), summarize(ws, interval, true)
			if c.n == 0 {
				fmt.Fprintf(w, "| %d | %s | %.2f | %d | %.2f | %.2f | 0 | no clean window | | | |\n", n, name, median(starts[k]), a.n, a.msP, a.msS)
				continue
			}
			fmt.Fprintf(w, "| %d | %s | %.2f | %d | %.2f | %.2f | %d | **%.2f** | **%.1f** | **%.2f** | **%.1f** |\n", n, name, median(starts[k]),
				a.n, a.msP, a.msS, c.n, c.msP, c.pctP, c.msS, c.pctS)
		}
	}
	return nil
}

// scaleWindow is one idle window of a scale session: each daemon's CPU time
// over it, its length, and the share of the machine's CPUs the host took.
type scaleWindow struct {
	cpuP, cpuS time.Duration
	wall       time.Duration
	interval   time.Duration
	steal      float64
	stealOK    bool
}

// clean says whether the host left the window alone: a window whose steal
// could not be read is not clean.
func (x scaleWindow) clean() bool { return x.stealOK && x.steal < cleanSteal }

// scaleFigures are the medians of a set of windows.
type scaleFigures struct {
	n                    int
	msP, msS, pctP, pctS float64
}

// summarize gives the medians of the windows' CPU per interval (ms) and
// share of one CPU (%) at each site, of the clean windows only if
// cleanOnly.
func summarize(ws []scaleWindow, interval time.Duration, cleanOnly bool) scaleFigures {
	var msP, msS, pctP, pctS []float64
	for _, x := range ws {
		if cleanOnly && !x.clean() {
			continue
		}
		intervals := x.wall.Seconds() / interval.Seconds()
		msP = append(msP, 1e3*x.cpuP.Seconds()/intervals)
		msS = append(msS, 1e3*x.cpuS.Seconds()/intervals)
		pctP = append(pctP, 100*x.cpuP.Seconds()/x.wall.Seconds())
		pctS = append(pctS, 100*x.cpuS.Seconds()/x.wall.Seconds())
	}
	return scaleFigures{n: len(msP), msP: median(msP), msS: median(msS), pctP: median(pctP), pctS: median(pctS)}
}

// threadsCPU is the CPU time a running process's threads have run, exact
// (the sum of /proc/PID/task/*/schedstat's run time, in ns), where
// /proc/PID/stat counts 10 ms ticks: an idle daemon spends tens of ms a
// second, which ticks move by a tenth from one window to the next. A thread
// that exited meanwhile is not counted; a Go daemon's threads live as long
// as it does.
func threadsCPU(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("threads of %d: %w", pid, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			// A thread that exited between the listing and the read.
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// scaleSession runs one session of n volumes of the duplex binary bin and
// measures it; tag tells its directory and profiles from those of other
// sessions of the same size.
func (b *bench) scaleSession(ctx context.Context, bin string, n int, tag string) (scaleRow, error) {
	subs := (n + 7) / 8
	// The secondary journals a consistency group of all subsystems'
	// sidefiles together, so many subsystems need a smaller limit each;
	// idle, the sidefiles stay empty.
	size, limit := int64(1<<20), int64(sidefileLimit)
	if n > 128 {
		size, limit = 128<<10, 8<<20
	}
	dir := filepath.Join(b.s.out, fmt.Sprintf("scale-%d%s", n, tag))
	spec := harness.Spec{Session: "bench-scale", Subsystems: subs, VolumesPerSubsystem: n / subs, VolumeSize: size, SidefileLimit: limit}
	start := time.Now()
	p, err := startPair(ctx, bin, dir, spec, "")
	if err != nil {
		return scaleRow{}, err
	}
	row, err := b.scaleRow(ctx, p, start, tag)
	row.subs, row.size, row.interval = subs, size, time.Duration(p.sess.Config.Interval)
	for i := range row.windows {
		row.windows[i].interval = row.interval
	}
	// The primary alone first: on SIGTERM it ships what it holds, and
	// its stop must never wait on idle work.
	stopped := time.Now()
	code := p.prim.Stop(2 * time.Minute)
	row.stop = time.Since(stopped)
	p.prim = nil
	p.stop()
	// The volumes and journal are the bench's, not the result's (the logs
	// stay): a round leaves the disk to the next.
	for _, d := range []string{"primary", "secondary"} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			slog.Warn("removing a scale session's volumes", "err", err)
		}
	}
	if err != nil {
		return row, err
	}
	if code != 0 {
		return row, fmt.Errorf("%d volumes: the primary exited %d on SIGTERM after %s", n, code, row.stop.Round(time.Millisecond))
	}
	return row, nil
}

type scaleRow struct {
	subs       int
	size       int64
	interval   time.Duration
	startup    time.Duration
	copy, stop time.Duration
	rssP, rssS int64
	windows    []scaleWindow
	groups     float64
}

func (b *bench) scaleRow(ctx context.Context, p *pair, start time.Time, tag string) (scaleRow, error) {
	var r scaleRow
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := harness.WaitStatus(wctx, p.sec, p.secCtl(), func(st control.Status) bool { return st.ConsistencyTime != "" }); err != nil {
		return r, err
	}
	r.startup = time.Since(start)
	// Idle means after the initial copies: until then the session is busy.
	if _, err := harness.WaitStatus(wctx, p.prim, p.primCtl(), func(st control.Status) bool {
		for _, v := range st.Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		return len(st.Volumes) > 0
	}); err != nil {
		return r, fmt.Errorf("initial copies: %w", err)
	}
	r.copy = time.Since(start) - r.startup
	// The last pairs' promotions and state saves, and the collection of
	// the copies' garbage, are the copies' work, not the idle session's.
	sleepCtx(ctx, 2*time.Second)
	var err error
	if _, r.rssP, err = harness.ProcMem(p.prim.Pid()); err != nil {
		return r, err
	}
	if _, r.rssS, err = harness.ProcMem(p.sec.Pid()); err != nil {
		return r, err
	}
	st0, err := harness.FetchRunning(ctx, control.Endpoint{Addr: p.secCtl()})
	if err != nil {
		return r, err
	}
	var profiles sync.WaitGroup
	profErrs := make([]error, 2)
	if b.s.scaleProfile {
		for i, site := range []struct{ name, ctl string }{{"primary", p.primCtl()}, {"secondary", p.secCtl()}} {
			path := filepath.Join(b.s.out, fmt.Sprintf("scale-%d%s-%s.pprof", len(p.sess.Volumes), tag, site.name))
			profiles.Go(func() { profErrs[i] = fetchProfile(ctx, site.ctl, int(b.s.idle.Seconds()), path) })
		}
	}
	win := b.s.idle / time.Duration(b.s.scaleWindows)
	for range b.s.scaleWindows {
		m0, t0 := readMachine(), time.Now()
		cp0, err1 := threadsCPU(p.prim.Pid())
		cs0, err2 := threadsCPU(p.sec.Pid())
		sleepCtx(ctx, win)
		cp1, err3 := threadsCPU(p.prim.Pid())
		cs1, err4 := threadsCPU(p.sec.Pid())
		m1, wall := readMachine(), time.Since(t0)
		if err := errors.Join(err1, err2, err3, err4, ctx.Err()); err != nil {
			profiles.Wait()
			return r, err
		}
		u := m0.use(m1, wall, 1)
		r.windows = append(r.windows, scaleWindow{cpuP: cp1 - cp0, cpuS: cs1 - cs0, wall: wall, steal: u.steal, stealOK: u.ok})
	}
	profiles.Wait()
	if err := errors.Join(profErrs...); err != nil {
		return r, err
	}
	st1, err := harness.FetchRunning(ctx, control.Endpoint{Addr: p.secCtl()})
	if err != nil {
		return r, err
	}
	if st0.GroupsApplied != nil && st1.GroupsApplied != nil {
		r.groups = float64(*st1.GroupsApplied - *st0.GroupsApplied)
	}
	return r, nil
}

func iops(j fiojson.Job) float64  { return j.IOPS }
func mibps(j fiojson.Job) float64 { return j.MiBps() }
func p99(j fiojson.Job) float64   { return j.P99 }

func field(js []fiojson.Job, f func(fiojson.Job) float64) []float64 {
	out := make([]float64, len(js))
	for i, j := range js {
		out[i] = f(j)
	}
	return out
}

func median(v []float64) float64 { return percentile(v, 50) }

// percentile by linear interpolation between closest ranks; NaN when empty.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	x := p / 100 * float64(len(s)-1)
	i := int(x)
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (x-float64(i))*(s[i+1]-s[i])
}

func medianDur(d []time.Duration) time.Duration {
	v := make([]float64, len(d))
	for i, x := range d {
		v[i] = float64(x)
	}
	return time.Duration(median(v))
}

func joinf(v []float64, format string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, " ")
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// settledState says, for the write section's report, the state each run's
// files start in.
func (b *bench) settledState() string {
	const synced = "Before every run the work directory's file system is synced (syncfs), so that no run meets the writeback of what another left dirty. "
	if b.s.writeCached {
		return synced + "Then each server's files (nbdkit's image; Duplex's primary and secondary volumes) are synced, " +
			"dropped from the page cache and read once whole without readahead, in single pages (-write-cache cached): the run's writes land in cached pages. "
	}
	return synced + "Then each server's files (nbdkit's image; Duplex's primary and secondary volumes) are synced and dropped " +
		"from the page cache, and before the read job the served image is then read once whole. "
}

// warmPages reads the whole file into the page cache with readahead off,
// which reads what is asked for into single pages (readahead's own reads
// make large folios), as a volume written 4 KiB at a time is held.
func warmPages(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	const fadvRandom = 1
	if _, _, e := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvRandom, 0, 0); e != 0 {
		return fmt.Errorf("fadvise %s: %w", path, e)
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := f.ReadAt(buf, off)
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
}
