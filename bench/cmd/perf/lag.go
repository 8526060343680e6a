package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"duplex/bench/harness"
)

// lagEvery is how often the lag section reads the secondary's lag: a spike
// lasts about one interval (20 ms) to a few, and one sample a second saw
// almost none of them.
const lagEvery = 100 * time.Millisecond

// lagSkip is what each lag run leaves out at its start, while fio starts.
const lagSkip = time.Second

// lagBuild is one Duplex build the lag section measures: its session.
type lagBuild struct {
	name string
	pair *pair
}

// lagRun is one fio run at one rate against one build.
type lagRun struct {
	vals     []float64
	errs     int
	achieved float64 // bytes/s
	load     string  // load average before the run
}

// lag reads the secondary's duplex_lag_seconds from /metrics every 100 ms
// while fio writes 4 KiB blocks at qd16 through the primary at fixed shares
// of the saturation bandwidth, both sites on this machine. With -compare a
// second build gets a session of its own, and the two alternate run by run.
func (b *bench) lag(ctx context.Context) error {
	if err := b.setup(ctx); err != nil {
		return err
	}
	sat := b.s.lagSat
	measured := "Duplex's median for that job in the write-cost section, or one run of it here"
	if sat > 0 {
		measured = "given with -lag-saturation"
	} else {
		if err := b.saturation(ctx); err != nil {
			return err
		}
		sat = b.satRand
	}
	builds := []lagBuild{{b.s.duplex, b.pair}}
	if b.s.compare != "" {
		cmp, err := b.comparePair(ctx)
		if err != nil {
			return err
		}
		builds = append(builds, lagBuild{b.s.compare, cmp})
	}
	seriesDir := filepath.Join(b.s.out, "lag")
	if err := os.MkdirAll(seriesDir, 0o755); err != nil {
		return err
	}
	// runs[rate][build] holds one run per round.
	runs := make([][][]lagRun, len(b.s.lagRates))
	for i := range runs {
		runs[i] = make([][]lagRun, len(builds))
	}
	for r := range b.s.rounds {
		for ri, pct := range b.s.lagRates {
			for _, bi := range runOrder(len(builds), r) {
				bd := builds[bi]
				if b.s.lagSettle {
					// What the bench itself left dirty (the prefill's copies,
					// the saturation run, the runs before this one, of
					// either build) would otherwise reach the disk during
					// this run, when the kernel's flusher finds it 30 s old:
					// a gigabyte at once, ahead of the journal's write and
					// fsync, which the lag waits for (bench/RESULTS.md).
					if err := harness.SyncFS(b.s.out); err != nil {
						return err
					}
				}
				run, err := b.lagOnce(ctx, bd.pair, sat*float64(pct)/100,
					filepath.Join(seriesDir, fmt.Sprintf("lag-%d-b%d-r%d.tsv", pct, bi+1, r+1)))
				if err != nil {
					return err
				}
				runs[ri][bi] = append(runs[ri][bi], run)
			}
		}
	}

	w := b.s.w
	fmt.Fprintf(w, "\n## Replication lag under a fixed write rate\n\n")
	fmt.Fprintf(w, "fio randwrite 4 KiB qd16 through the Duplex primary at a fixed --rate, %s per run, %d rounds; the saturation "+
		"bandwidth is %.1f MiB/s (%s). The secondary's duplex_lag_seconds (now − the applied group's consistency time) is read "+
		"from its /metrics every %s; the first %s of each run is left out. Interval %s. Each run's samples are in %s.\n\n",
		b.s.lagRun, b.s.rounds, sat/(1<<20), measured, lagEvery, lagSkip, b.pair.sess.Config.Interval, seriesDir)
	if b.s.lagSettle {
		fmt.Fprintf(w, "Before every run the work directory's file system is synced (syncfs), so that no run meets the writeback of what "+
			"the bench wrote before it (-lag-settle=false: not synced).\n\n")
	} else {
		fmt.Fprintf(w, "The file system is not synced between runs (-lag-settle=false): a run may meet the writeback of what the bench wrote before it.\n\n")
	}
	if len(builds) > 1 {
		fmt.Fprintf(w, "Two builds, each its own session, alternated run by run (b1 first in rounds 1, 3, …, b2 first in rounds 2, 4, …): b1 `%s`, b2 `%s`.\n\n", builds[0].name, builds[1].name)
	}
	fmt.Fprintf(w, "| load | build | fio rate MiB/s | achieved MiB/s | samples | lag p50 ms | lag p99 ms | lag max ms | p99 per round (ms) | load average (1 min) before each round |\n")
	fmt.Fprintf(w, "|---|---|---:|---:|---:|---:|---:|---:|---|---|\n")
	for ri, pct := range b.s.lagRates {
		for bi := range builds {
			rs := runs[ri][bi]
			var all, p99s, ach []float64
			var loads []string
			errs := 0
			for _, run := range rs {
				all = append(all, run.vals...)
				p99s = append(p99s, percentile(run.vals, 99)*1e3)
				ach = append(ach, run.achieved)
				loads = append(loads, run.load)
				errs += run.errs
			}
			load := "idle"
			if pct > 0 {
				load = fmt.Sprintf("%d %%", pct)
			}
			fmt.Fprintf(w, "| %s | b%d | %.1f | %.1f | %d%s | %.1f | %.1f | %.1f | %s | %s |\n", load, bi+1,
				sat*float64(pct)/100/(1<<20), median(ach)/(1<<20), len(all), errNote(errs),
				percentile(all, 50)*1e3, percentile(all, 99)*1e3, slices.Max(append(all, 0))*1e3,
				joinf(p99s, "%.1f"), strings.Join(loads, " "))
		}
	}
	fmt.Fprintf(w, "\np50, p99 and max are over the samples of every round together.\n")
	return nil
}

// lagOnce runs fio at rate bytes/s (none: idle) against p for the lag run
// time, sampling the secondary's lag, and writes the samples to series.
func (b *bench) lagOnce(ctx context.Context, p *pair, rate float64, series string) (lagRun, error) {
	run := lagRun{load: strings.Fields(harness.LoadAvg())[0]}
	start := time.Now()
	var times []time.Duration
	s := sample(lagEvery, int(lagSkip/lagEvery), func() (float64, error) {
		v, err := metricValue(ctx, p.secCtl(), "duplex_lag_seconds")
		if err == nil {
			times = append(times, time.Since(start))
		}
		return v, err
	})
	if rate == 0 {
		sleepCtx(ctx, b.s.lagRun)
	} else {
		jobs, err := b.fio(ctx, fmt.Sprintf("lag-%s", filepath.Base(strings.TrimSuffix(series, ".tsv"))),
			b.nbdArgs("lag", p.uri(0), "randwrite", "4k", 16, b.s.lagRun, 0, fmt.Sprintf("--rate=%d", int64(rate)))...)
		if err != nil {
			s.end()
			return run, err
		}
		run.achieved = jobs[0].BW
	}
	run.vals, run.errs = s.end()
	var sb strings.Builder
	sb.WriteString("# seconds since the run started (samples of the first second included)\tlag seconds (first second left out)\n")
	// times holds every successful read, vals those after the skip.
	off := len(times) - len(run.vals)
	for i, v := range run.vals {
		fmt.Fprintf(&sb, "%.3f\t%.4f\n", times[off+i].Seconds(), v)
	}
	if err := os.WriteFile(series, []byte(sb.String()), 0o644); err != nil {
		return run, err
	}
	if _, err := p.drain(ctx); err != nil {
		return run, err
	}
	return run, nil
}

// metricValue reads one unlabelled-by-us metric's value from a site's
// /metrics (its labels, session and role, are the site's own).
func metricValue(ctx context.Context, ctl, name string) (float64, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, "http://"+ctl+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics at %s: %s", ctl, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil && math.IsNaN(v) {
			// A gauge unknown for now (the lag before the first group).
			return 0, fmt.Errorf("%s at %s is NaN: not known yet", name, ctl)
		}
		return v, err
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /metrics at %s", name, ctl)
}
