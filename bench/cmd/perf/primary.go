package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"duplex/bench/fiojson"
	"duplex/bench/harness"
	"duplex/internal/freeport"
)

// The primary-side section measures what replication costs the primary alone,
// as if the secondary ran on another machine: the secondary daemon has CPU 1
// to itself, and fio shares CPU 0 with the server under test, nbdkit's file
// plugin or the Duplex primary. The jobs run in this order so that the large
// writes of the last ones cannot slow the small ones.
//
// A burst job writes the volume once, not for a time, to a session whose
// sidefile holds all of it below the pacing start: what the primary costs
// while a burst fits in the sidefile. The timed 1 MiB job outlasts the
// sidefile many times over and measures the primary paced to the secondary.
type primaryJob struct {
	name, rw, bs string
	qd           int
	burst        bool
}

var primaryJobs = []primaryJob{
	{"randwrite-4k-qd1", "randwrite", "4k", 1, false},
	{"randwrite-4k-qd16", "randwrite", "4k", 16, false},
	{"randread-4k-qd16", "randread", "4k", 16, false},
	{"write-1m-qd4-burst", "write", "1M", 4, true},
	{"write-1m-qd4", "write", "1M", 4, false},
}

const (
	serverCPU    = "0" // fio and the server under test
	secondaryCPU = "1" // the secondary daemon, alone
	primaryVol   = 256 << 20
	// burstSidefile holds a burst of the whole volume below the pacing
	// start (half the limit). Not more: the secondary keeps room in its
	// journal for two groups of up to the sidefile's size.
	burstSidefile = 2*primaryVol + 64<<20
)

// pinned returns the command line that runs argv on cpu.
func pinned(cpu string, argv ...string) (string, []string) {
	return "taskset", append([]string{"-c", cpu}, argv...)
}

func (b *bench) primarySide(ctx context.Context) error {
	if _, err := exec.LookPath("taskset"); err != nil {
		return fmt.Errorf("the primary-side section pins processes with taskset: %w", err)
	}
	dir, err := filepath.Abs(filepath.Join(b.s.out, "primary"))
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	runtime, ramp := 10*time.Second, 2*time.Second
	if b.s.quick {
		runtime, ramp = 3*time.Second, 0
	}
	// Both servers get a copy of one prefilled image: writes overwrite
	// allocated blocks and reads hit data, on both alike.
	image := filepath.Join(dir, "nbdkit.img")
	if _, err := b.fio(ctx, "primary-prefill", "--name=prefill", "--ioengine=psync", "--rw=write", "--bs=1M",
		fmt.Sprintf("--size=%d", primaryVol), "--filename="+image, "--end_fsync=1"); err != nil {
		return err
	}
	jobs := primaryJobs
	if len(b.s.primaryJobs) > 0 {
		jobs = slices.DeleteFunc(slices.Clone(primaryJobs), func(j primaryJob) bool { return !slices.Contains(b.s.primaryJobs, j.name) })
	}
	burst := slices.ContainsFunc(jobs, func(j primaryJob) bool { return j.burst })
	// Burst rounds alone need no session of the ordinary limit: not
	// starting one saves its initial copy, and the bench lock's time.
	timed := slices.ContainsFunc(jobs, func(j primaryJob) bool { return !j.burst })
	var p, pb, cp, cmpb *pair
	if timed {
		if p, err = b.startPinnedPair(ctx, b.s.duplex, filepath.Join(dir, "duplex"), image, sidefileLimit, 0); err != nil {
			return err
		}
		defer p.stop()
	}
	if burst {
		if pb, err = b.startPinnedPair(ctx, b.s.duplex, filepath.Join(dir, "duplex-burst"), image, burstSidefile, b.s.burstReserve); err != nil {
			return err
		}
		defer pb.stop()
	}
	if b.s.compare != "" && timed {
		if cp, err = b.startPinnedPair(ctx, b.s.compare, filepath.Join(dir, "compare"), image, sidefileLimit, 0); err != nil {
			return err
		}
		defer cp.stop()
	}
	if b.s.compare != "" {
		if burst {
			if cmpb, err = b.startPinnedPair(ctx, b.s.compare, filepath.Join(dir, "compare-burst"), image, burstSidefile, 0); err != nil {
				return err
			}
			defer cmpb.stop()
		}
	}
	nbdkit, nbdkitAddr, err := startPinnedNbdkit(ctx, dir, image)
	if err != nil {
		return err
	}
	defer nbdkit.Stop(10 * time.Second)
	var floor *harness.Daemon
	var floorAddr, floorImage string
	if b.s.floor != "" {
		floorImage = filepath.Join(dir, "floor.img")
		if err := copyFile(ctx, image, floorImage); err != nil {
			return err
		}
		if floor, floorAddr, err = startPinnedFloor(ctx, b.s.floor, dir, floorImage); err != nil {
			return err
		}
		defer floor.Stop(10 * time.Second)
	}

	type server struct {
		name, uri, image string
		pid              int
		pair             *pair
		burst            *server // the burst job's server, if not this one
	}
	of := func(name string, p *pair) server {
		return server{name, p.uri(0), p.sess.PrimaryPaths()[0], p.prim.Pid(), p, nil}
	}
	// build is a Duplex build's server: its timed session's, with its
	// burst session's for the burst job; the burst session's alone when
	// only the burst runs.
	build := func(name string, p, pb *pair) server {
		if p == nil {
			return of(name, pb)
		}
		sv := of(name, p)
		if pb != nil {
			sb := of(name, pb)
			sv.burst = &sb
		}
		return sv
	}
	servers := []server{
		{"nbdkit", "nbd://" + nbdkitAddr + "/", image, nbdkit.Pid(), nil, nil},
		build("duplex", p, pb),
	}
	if b.s.compare != "" {
		servers = append(servers, build("compare", cp, cmpb))
	}
	if floor != nil {
		servers = append(servers, server{"floor", "nbd://" + floorAddr + "/", floorImage, floor.Pid(), nil, nil})
	}
	type result struct {
		job    fiojson.Job
		cpuPer float64 // server CPU seconds per I/O
		// faultsPer is the server's minor faults per I/O: a burst into
		// fresh memory takes one for each of its pages, one held in
		// memory from a burst before none.
		faultsPer float64
		// drainedPer is the server's CPU seconds per I/O over the run
		// and the drain of its sidefile after it: all the replication
		// of the run's writes at the primary, whether sent during the
		// run or after (a burst is held while it lasts, for at most
		// burst_wait, so a slow one sends part of itself during the
		// run); 0 where nothing is drained.
		drainedPer float64
		// clockPer is the server's task-clock (perf stat) per I/O over
		// the run, exact where cpuPer counts 10 ms ticks; 0 without perf.
		clockPer float64
		// switchesPer is the server's context switches (perf stat) per
		// I/O over the run; 0 without perf.
		switchesPer float64
		load        string // the load average after the run
		// env0 and env1 are the machine's steal and page cache counters
		// right before fio started and right after it ended: what the run
		// met besides the server and fio.
		env0, env1 runEnv
		wall       float64 // seconds, fio's start to its end
		// position is the run's place in its round's order (1: first);
		// after the server that ran just before it in the round, "" for
		// the round's first run.
		position int
		after    string
	}
	res := make([][4][]result, len(jobs))
	load := []string{harness.LoadAvg()}
	// Every run, warm-up rounds and every burst included, one line each in
	// the order run: what an order effect is read from, where rounds.json
	// keeps each round's median burst only.
	runLog, err := os.Create(filepath.Join(dir, "runs.tsv"))
	if err != nil {
		return err
	}
	defer runLog.Close()
	fmt.Fprintf(runLog, "round\tjob\tserver\trepeat\tposition\tafter\tiops\tclock_us_per_io\tswitches_per_io\tfaults_per_io\tcpu1_busy\tsteal0_ms\n")
	// The warm-up rounds run first and are not counted: a fresh
	// session's first burst takes a fresh page for every page of its
	// sidefile buffers, which later bursts reuse.
	for r := range b.s.warmup + b.s.rounds {
		warm := r < b.s.warmup
		for j, job := range jobs {
			// A burst is a run of a fraction of a second: each round runs
			// it burstRepeats times on each server, the servers
			// alternating burst by burst, and keeps each server's median
			// burst (by IOPS), so that one burst disturbed by the
			// machine does not make the round's ratio.
			reps := 1
			if job.burst {
				reps = max(b.s.burstRepeats, 1)
			}
			runs := make([][]result, len(servers))
			// A B A B, job by job, round after round: a change in the
			// machine's load hits both servers alike; the order reversed
			// every other round, so that no server's figure is its
			// place's (runOrder).
			seq := roundRuns(len(servers), r-b.s.warmup, reps)
			for i, si := range seq {
				rep, pos := i/len(servers), i%len(servers)
				sv := servers[si]
				if job.burst && sv.burst != nil {
					sv = *sv.burst
				}
				// The same settled state before every run: nothing of
				// the image in the page cache, as after drop_caches;
				// for the read job then all of it, so that it measures
				// the server rather than the disk. With -primary-settle
				// nothing dirty either: what the runs before left (the
				// secondary's volume and journal after a Duplex run, the
				// prefill's copies) would otherwise be written back
				// during this run, beside it on the disk and in the
				// kernel's threads on its CPU.
				if b.s.primarySettle {
					if err := harness.SyncFS(dir); err != nil {
						return err
					}
				}
				if err := harness.DropCache(sv.image); err != nil {
					return err
				}
				if job.rw == "randread" || (job.burst && b.s.burstCached) {
					if err := warmCache(sv.image); err != nil {
						return err
					}
				}
				cpu0, err := harness.ProcCPU(sv.pid)
				if err != nil {
					return err
				}
				faults0, err := harness.ProcFaults(sv.pid)
				if err != nil {
					return err
				}
				name := fmt.Sprintf("primary-%s-%s-r%d", job.name, sv.name, r+1-b.s.warmup)
				if warm {
					name = fmt.Sprintf("primary-%s-%s-warmup%d", job.name, sv.name, r+1)
				}
				if reps > 1 {
					name += fmt.Sprintf("-b%d", rep+1)
				}
				clock, err := startTaskClock(ctx, dir, sv.pid)
				if err != nil {
					return err
				}
				args := b.primaryArgs(job.name, sv.uri, job.rw, job.bs, job.qd, runtime, ramp)
				if job.burst {
					args = b.primaryArgs(job.name, sv.uri, job.rw, job.bs, job.qd, 0, 0)
				}
				env0, t0 := readRunEnv(), time.Now()
				jobs, err := b.fioPinned(ctx, name, args...)
				wall, env1 := time.Since(t0).Seconds(), readRunEnv()
				if err != nil {
					clock.stop()
					return err
				}
				clocked, switches, err := clock.stop()
				if err != nil {
					return err
				}
				cpu1, err := harness.ProcCPU(sv.pid)
				if err != nil {
					return err
				}
				faults1, err := harness.ProcFaults(sv.pid)
				if err != nil {
					return err
				}
				// The CPU time covers the ramp too, so it is divided by
				// every I/O of the run, ramp included, estimated from
				// the measured rate.
				ios := jobs[0].IOPS * jobs[0].Runtime
				if !job.burst {
					ios = jobs[0].IOPS * (jobs[0].Runtime + ramp.Seconds())
				}
				rs := result{job: jobs[0], cpuPer: (cpu1 - cpu0).Seconds() / max(ios, 1), faultsPer: float64(faults1-faults0) / max(ios, 1),
					clockPer: clocked.Seconds() / max(ios, 1), switchesPer: float64(switches) / max(ios, 1),
					env0: env0, env1: env1, wall: wall, position: pos + 1}
				if i > 0 {
					rs.after = servers[seq[i-1]].name
				}
				if sv.pair != nil && job.rw != "randread" {
					if _, err := sv.pair.drain(ctx); err != nil {
						return fmt.Errorf("after %s: %w", name, err)
					}
					cpu2, err := harness.ProcCPU(sv.pid)
					if err != nil {
						return err
					}
					rs.drainedPer = (cpu2 - cpu0).Seconds() / max(ios, 1)
				}
				rs.load = harness.LoadAvg()
				runs[si] = append(runs[si], rs)
				var busy1, steal0 float64
				if e0, e1 := rs.env0, rs.env1; e0.ok && e1.ok {
					if all := (e1.cpu1Busy - e0.cpu1Busy) + (e1.cpu1Idle - e0.cpu1Idle); all > 0 {
						busy1 = (e1.cpu1Busy - e0.cpu1Busy) / all
					}
					steal0 = (e1.steal[0] - e0.steal[0]) * 1e3
				}
				fmt.Fprintf(runLog, "%d\t%s\t%s\t%d\t%d\t%s\t%.0f\t%.1f\t%.2f\t%.1f\t%.3f\t%.0f\n", r+1-b.s.warmup, job.name, sv.name, rep+1, pos+1,
					cmp.Or(rs.after, "-"), rs.job.IOPS, rs.clockPer*1e6, rs.switchesPer, rs.faultsPer, busy1, steal0)
			}
			if !warm {
				for si, rr := range runs {
					slices.SortFunc(rr, func(a, b result) int { return int(math.Copysign(1, a.job.IOPS-b.job.IOPS)) })
					res[j][si] = append(res[j][si], rr[len(rr)/2])
				}
			}
		}
		if !warm {
			load = append(load, harness.LoadAvg())
		}
	}
	// Every round's figures, for runs split over several holds of the
	// bench lock to be put together.
	type roundJSON struct {
		Job, Server                              string
		Round                                    int
		IOPS, CPUPerIO, ClockPerIO, DrainedPerIO float64
		FaultsPerIO, SwitchesPerIO               float64
		Load                                     string
		// Over fio's run: the host's steal of each CPU, ms; CPU 0's
		// idle (and iowait) share; MiB dirty in the page cache at its
		// start and written back during it; MiB free at its start.
		Steal0ms, Steal1ms, CPU0Idle  float64
		DirtyMiB, WrittenMiB, FreeMiB float64
		WallSeconds                   float64
		// Position is the run's place in its round's order (1: first),
		// After the server run just before it ("" for the round's first):
		// what an order effect would follow. CPU1Busy is CPU 1's busy
		// share over the run (the secondaries' work, this server's or
		// the one run before).
		Position int
		After    string
		CPU1Busy float64
	}
	var all []roundJSON
	for j, job := range jobs {
		for si, sv := range servers {
			for r, rs := range res[j][si] {
				rj := roundJSON{Job: job.name, Server: sv.name, Round: r + 1, IOPS: rs.job.IOPS, CPUPerIO: rs.cpuPer * 1e6,
					ClockPerIO: rs.clockPer * 1e6, DrainedPerIO: rs.drainedPer * 1e6, FaultsPerIO: rs.faultsPer,
					SwitchesPerIO: rs.switchesPer, Load: rs.load, WallSeconds: rs.wall, Position: rs.position, After: rs.after}
				if e0, e1 := rs.env0, rs.env1; e0.ok && e1.ok {
					rj.Steal0ms, rj.Steal1ms = (e1.steal[0]-e0.steal[0])*1e3, (e1.steal[1]-e0.steal[1])*1e3
					if all := (e1.cpu0Busy - e0.cpu0Busy) + (e1.cpu0IdleIow - e0.cpu0IdleIow); all > 0 {
						rj.CPU0Idle = (e1.cpu0IdleIow - e0.cpu0IdleIow) / all
					}
					rj.DirtyMiB, rj.WrittenMiB, rj.FreeMiB = e0.dirty/(1<<20), (e1.written-e0.written)/(1<<20), e0.freePages/(1<<20)
					if all := (e1.cpu1Busy - e0.cpu1Busy) + (e1.cpu1Idle - e0.cpu1Idle); all > 0 {
						rj.CPU1Busy = (e1.cpu1Busy - e0.cpu1Busy) / all
					}
				}
				all = append(all, rj)
			}
		}
	}
	if js, err := json.MarshalIndent(all, "", "  "); err == nil {
		if err := os.WriteFile(filepath.Join(dir, "rounds.json"), js, 0o644); err != nil {
			return err
		}
	}

	w := b.s.w
	fmt.Fprintf(w, "\n## Primary-side cost: nbdkit file plugin vs Duplex primary, secondary on its own CPU\n\n")
	fmt.Fprintf(w, "The secondary daemon alone on CPU %s (`taskset -c %s duplex secondary`); fio (nbd engine) and the server under test "+
		"together on CPU %s (`taskset -c %s`). Both serve a copy of one prefilled %d MiB image; before every run the image is synced "+
		"and dropped from the page cache (`fdatasync` + `posix_fadvise(DONTNEED)`, as `sync; echo 1 > /proc/sys/vm/drop_caches` does for it), "+
		"and before the read job then read once whole, so that both servers read from the page cache. "+
		"%s per run after %s ramp, %d rounds alternating nbdkit and Duplex job by job (after %d not counted), the servers in the order listed in rounds 1, 3, … and reversed in rounds 2, 4, … "+
		"(each run's place and the server run before it are in rounds.json); medians over rounds. "+
		"The burst job writes the volume once (%d MiB) to a session of its own whose sidefile limit (%d MiB) holds it all below the pacing start, so it is never paced; the timed 1 MiB job outlasts a %d MiB sidefile many times and is paced to the secondary. "+
		"CPU/IO is the server's user+system CPU time over the run divided by its I/Os; faults/IO its minor page faults (/proc/PID/stat) over the run divided by its I/Os: "+
		"a 1 MiB write into fresh memory takes 256, one into memory the server held already none. "+
		"Duplex's CPU/IO with drain is its CPU over the run and the drain of its sidefile after it, per I/O of the run: the whole of the writes' replication at the primary, sent during the run or after. "+
		"Load average at the start and after each round: %s.\n\n",
		secondaryCPU, secondaryCPU, serverCPU, serverCPU, primaryVol>>20, runtime, ramp, b.s.rounds, b.s.warmup,
		primaryVol>>20, burstSidefile>>20, sidefileLimit>>20, strings.Join(load, " → "))
	settle := "The work directory's file system is synced (syncfs) before every run, so that none meets the writeback of what the runs before it left dirty."
	if !b.s.primarySettle {
		settle = "The file system is not synced between runs (-primary-settle=false): a run may meet the writeback of what the runs before it left dirty."
	}
	burstState := "before every burst the image is read once whole after its drop, so that both servers overwrite pages the cache holds " +
		"(a burst into dropped pages costs what the virtual machine's host charges for pages it took back, 0.5–3 ms of CPU a MiB from one burst to the next)"
	if !b.s.burstCached {
		burstState = "every burst writes into dropped pages (-burst-cache dropped)"
	}
	fmt.Fprintf(w, "%s The burst runs %d times a round on each server, the servers alternating burst by burst, each server's median burst (by IOPS) "+
		"counted as the round's; %s. Each run's steal, CPU 0's idle share and the page cache's dirty and written-back bytes are in rounds.json.\n\n",
		settle, max(b.s.burstRepeats, 1), burstState)
	table := func(d int) {
		fmt.Fprintf(w, "| job | nbdkit IOPS | nbdkit µs CPU/IO | Duplex IOPS | Duplex µs CPU/IO | Duplex/nbdkit (median of rounds) | ratio per round | Duplex µs CPU/IO per round | … with drain, per round | nbdkit, Duplex faults/IO per round |\n")
		fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---|---|---|---|\n")
		var clocks []string
		for j, job := range jobs {
			k, d := res[j][0], res[j][d]
			var ratios, kIOPS, dIOPS, kCPU, dCPU, dDrained, kFaults, dFaults, kClock, dClock, kSw, dSw []float64
			for r := range k {
				kClock, dClock = append(kClock, k[r].clockPer*1e6), append(dClock, d[r].clockPer*1e6)
				kSw, dSw = append(kSw, k[r].switchesPer), append(dSw, d[r].switchesPer)
				ratios = append(ratios, d[r].job.IOPS/k[r].job.IOPS)
				kIOPS, dIOPS = append(kIOPS, k[r].job.IOPS), append(dIOPS, d[r].job.IOPS)
				kCPU, dCPU = append(kCPU, k[r].cpuPer*1e6), append(dCPU, d[r].cpuPer*1e6)
				kFaults, dFaults = append(kFaults, k[r].faultsPer), append(dFaults, d[r].faultsPer)
				dDrained = append(dDrained, d[r].drainedPer*1e6)
			}
			drained := "–"
			if slices.ContainsFunc(dDrained, func(x float64) bool { return x > 0 }) {
				drained = joinf(dDrained, "%.1f")
			}
			fmt.Fprintf(w, "| %s | %.0f | %.1f | %.0f | %.1f | **%.2f** | %s | %s | %s | %s; %s |\n", job.name,
				median(kIOPS), median(kCPU), median(dIOPS), median(dCPU), median(ratios), joinf(ratios, "%.2f"), joinf(dCPU, "%.1f"),
				drained, joinf(kFaults, "%.1f"), joinf(dFaults, "%.1f"))
			if median(dClock) > 0 {
				clocks = append(clocks, fmt.Sprintf("| %s | %.1f (%.1f–%.1f) | %.1f (%.1f–%.1f) | %.2f | %s | %s | %.2f, %.2f (%s) |\n", job.name,
					median(kClock), slices.Min(kClock), slices.Max(kClock), median(dClock), slices.Min(dClock), slices.Max(dClock),
					median(dClock)/median(kClock), joinf(kClock, "%.0f"), joinf(dClock, "%.0f"),
					median(kSw), median(dSw), joinf(dSw, "%.2f")))
			}
		}
		if len(clocks) > 0 {
			fmt.Fprintf(w, "\nThe same runs' task-clock (perf stat, every thread of the server, exact where CPU/IO above counts 10 ms ticks), µs per I/O, and context switches per I/O:\n\n")
			fmt.Fprintf(w, "| job | nbdkit median (min–max) | Duplex median (min–max) | Duplex/nbdkit | nbdkit per round | Duplex per round | switches/IO nbdkit, Duplex (Duplex per round) |\n|---|---:|---:|---:|---|---|---|\n")
			for _, c := range clocks {
				fmt.Fprint(w, c)
			}
		}
	}
	if b.s.compare == "" {
		table(1)
	} else {
		fmt.Fprintf(w, "Two Duplex builds, each its own session, alternated with nbdkit in the same rounds (nbdkit, then `%s`, then `%s` in rounds 1, 3, …; the reverse in rounds 2, 4, …).\n\n", b.s.duplex, b.s.compare)
		fmt.Fprintf(w, "`%s`:\n\n", b.s.duplex)
		table(1)
		fmt.Fprintf(w, "\n`%s`:\n\n", b.s.compare)
		table(2)
	}
	if floor != nil {
		// In the Duplex columns: Duplex's NBD server over the image,
		// without replication, listed last.
		fmt.Fprintf(w, "\nDuplex's NBD server without replication (`%s`, in the Duplex columns), in the same rounds, listed after the Duplex builds:\n\n", b.s.floor)
		table(len(servers) - 1)
	}
	return nil
}

// startPinnedFloor serves image with nbdfloor on CPU serverCPU.
func startPinnedFloor(ctx context.Context, floor, dir, image string) (*harness.Daemon, string, error) {
	addrs, err := freeport.Addrs(1)
	if err != nil {
		return nil, "", err
	}
	bin, args := pinned(serverCPU, floor, "-listen", addrs[0], "-file", image)
	return startListening(ctx, "nbdfloor", dir, addrs[0], bin, args)
}

// primaryArgs are fio's options for a job of d after ramp; d zero: one pass
// over the volume.
func (b *bench) primaryArgs(name, uri, rw, bs string, qd int, d, ramp time.Duration) []string {
	args := []string{"--name=" + name, "--ioengine=nbd", "--uri=" + uri, "--rw=" + rw, "--bs=" + bs,
		fmt.Sprintf("--iodepth=%d", qd), fmt.Sprintf("--size=%d", primaryVol),
		"--norandommap", "--randrepeat=0"}
	if d > 0 {
		args = append(args, "--time_based", fmt.Sprintf("--runtime=%d", int(d.Seconds())))
	}
	if ramp > 0 {
		args = append(args, fmt.Sprintf("--ramp_time=%d", int(ramp.Seconds())))
	}
	return args
}

// startPinnedPair starts a Duplex session of one volume, a copy of prefill at
// both sites, with a sidefile of the given limit, with the secondary on its own CPU and the primary on the CPU
// fio uses, and returns once the initial copy is over and shipped.
func (b *bench) startPinnedPair(ctx context.Context, duplex, dir, prefill string, sidefile, reserve int64) (*pair, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	sess, err := harness.NewSession(dir, harness.Spec{Session: "bench-primary", VolumeSize: primaryVol, SidefileLimit: sidefile, BurstReserve: reserve})
	if err != nil {
		return nil, err
	}
	for _, path := range append(sess.PrimaryPaths(), sess.SecondaryPaths()...) {
		if err := copyFile(ctx, prefill, path); err != nil {
			return nil, err
		}
	}
	p := &pair{sess: sess}
	bin, args := pinned(secondaryCPU, duplex, "secondary", "--config", sess.ConfigPath)
	if p.sec, err = harness.Start("secondary", filepath.Join(dir, "secondary.log"), bin, args...); err != nil {
		return nil, err
	}
	bin, args = pinned(serverCPU, duplex, "primary", "--config", sess.ConfigPath)
	if p.prim, err = harness.Start("primary", filepath.Join(dir, "primary.log"), bin, args...); err != nil {
		p.stop()
		return nil, err
	}
	if err := p.waitCopied(ctx); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// startPinnedNbdkit serves image with nbdkit's file plugin on CPU serverCPU.
func startPinnedNbdkit(ctx context.Context, dir, image string) (*harness.Daemon, string, error) {
	addrs, err := freeport.Addrs(1)
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(addrs[0])
	bin, args := pinned(serverCPU, "nbdkit", "-f", "--exit-with-parent",
		"-P", filepath.Join(dir, "nbdkit.pid"), "-i", "127.0.0.1", "-p", port, "file", image)
	return startListening(ctx, "nbdkit", dir, addrs[0], bin, args)
}

// startListening starts a server and returns once it accepts connections
// on addr.
func startListening(ctx context.Context, name, dir, addr, bin string, args []string) (*harness.Daemon, string, error) {
	d, err := harness.Start(name, filepath.Join(dir, name+".log"), bin, args...)
	if err != nil {
		return nil, "", err
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return d, addr, nil
		}
		if d.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
			d.Stop(5 * time.Second)
			return nil, "", fmt.Errorf("%s did not start: %s", name, d.LogTail(1000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fioPinned is fio on serverCPU, its JSON report kept as out/fio/NAME.json.
func (b *bench) fioPinned(ctx context.Context, name string, args ...string) ([]fiojson.Job, error) {
	dir := filepath.Join(b.s.out, "fio")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, name+".json")
	bin, full := pinned(serverCPU, append([]string{"fio", "--output-format=json", "--output=" + out}, args...)...)
	if b, err := exec.CommandContext(ctx, bin, full...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(full, " "), err, b)
	}
	jobs, err := fiojson.ParseFile(out)
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if j.Error != 0 {
			return nil, fmt.Errorf("fio job %s failed with error %d (see %s)", j.Name, j.Error, out)
		}
	}
	return jobs, nil
}

// warmCache reads the whole file once, into the page cache.
func warmCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}
