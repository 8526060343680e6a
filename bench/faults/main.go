// Command faults is Duplex's fault campaign: it runs the two sites as
// processes of the built binary, with an in-repo TCP proxy on the link between
// them, drives a dependent-write workload over NBD, injects one fault per
// trial, and checks the secondary:
//
//   - violations: a secondary image that holds a write without one it depends
//     on (workload.Check), after a kill -9 and recover, and at the end;
//   - lost: a journaled group the secondary came back without after a kill,
//     or, once the primary has drained cleanly, a block the secondary lacks.
//
// Usage:
//
//	go run ./bench/faults -trials 5 -kind all
//
// Kinds: primary-kill (kill -9 the primary mid-workload, restart it, write
// on), secondary-kill (kill -9 the secondary while it applies, duplex recover,
// check, restart), link-cut (1-3 s), latency (50-200 ms for 2 s), corrupt (bits
// flipped in the stream), and the operation faults (operations.go):
// suspend-resume, auto-suspend, disk-full (needs root, for a tmpfs under the
// journal), resync-crash (kill -9 of either site mid-resync, over a link
// slowed so that the resync lasts seconds), resync-disk-full (the journal's
// file system full in the middle of such a resync; root), resync-disk-error
// (a secondary volume's disk failing with EIO from the middle of such a
// resync; root, nbdkit, nbdfuse). Faults come once every pair has completed
// its first copy. It prints "kind: trials N, violations V, lost L" per kind
// (for the resync kinds also how many faults missed the resync) and exits 1
// if any trial had a violation, a loss or a stall, or could not be run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("faults", flag.ContinueOnError)
	fs.SetOutput(stderr)
	trials := fs.Int("trials", 3, "trials per fault kind")
	kind := fs.String("kind", "all", "all, or a comma-separated list of: "+strings.Join(kinds, ", "))
	bin := fs.String("duplex", "", "duplex binary (default: go build ./cmd/duplex into the work directory)")
	dir := fs.String("dir", "", "work directory (default: a temporary one, removed unless -keep or a trial fails)")
	keep := fs.Bool("keep", false, "keep the work directory")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the fault timings")
	verbose := fs.Bool("v", false, "print every trial's notes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	selected := kinds
	if *kind != "all" {
		selected = strings.Split(*kind, ",")
		for _, k := range selected {
			if !slices.Contains(kinds, k) {
				fmt.Fprintf(stderr, "faults: unknown kind %q (want all or %s)\n", k, strings.Join(kinds, ", "))
				return 2
			}
		}
	}
	if *trials < 1 {
		fmt.Fprintln(stderr, "faults: -trials must be at least 1")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	work := *dir
	if work == "" {
		d, err := os.MkdirTemp("", "duplex-faults-")
		if err != nil {
			fmt.Fprintln(stderr, "faults:", err)
			return 1
		}
		work = d
	}
	if *bin == "" {
		b, err := buildDuplex(ctx, work)
		if err != nil {
			fmt.Fprintln(stderr, "faults:", err)
			return 1
		}
		*bin = b
	}
	s := settings{bin: *bin, dir: work, warm: time.Second, drain: 30 * time.Second, catchUp: 30 * time.Second}
	fmt.Fprintf(stdout, "fault campaign: %d trial(s) of %s, seed %d, work dir %s\n", *trials, strings.Join(selected, ","), *seed, work)
	sums := campaign(ctx, s, selected, *trials, *seed, func(r result) {
		printTrial(stdout, r, *verbose)
	})
	failed := false
	fmt.Fprintln(stdout)
	for _, sm := range sums {
		fmt.Fprintln(stdout, sm)
		failed = failed || sm.failed()
	}
	if failed || *keep || *dir != "" {
		fmt.Fprintln(stdout, "work directory kept:", work)
	} else {
		os.RemoveAll(work)
	}
	if failed {
		return 1
	}
	return 0
}

// summary of one kind.
type summary struct {
	kind                              string
	trials, violations, lost, stalled int
	statusRegress, errors             int
	// missed counts resync-crash trials whose kill (resync-disk-full trials
	// whose full disk) came outside the resync.
	missed     int
	maxCatchUp time.Duration
}

func (s summary) failed() bool {
	return s.violations > 0 || s.lost > 0 || s.stalled > 0 || s.errors > 0
}

// String is the campaign's result line: the first three figures are the
// contract of this command; the rest explain them.
func (s summary) String() string {
	out := fmt.Sprintf("%s: trials %d, violations %d, lost %d", s.kind, s.trials, s.violations, s.lost)
	out += fmt.Sprintf(" (stalled %d, status-regressions %d, errors %d, slowest catch-up %s)",
		s.stalled, s.statusRegress, s.errors, s.maxCatchUp.Round(time.Millisecond))
	switch s.kind {
	case "resync-crash":
		out += fmt.Sprintf(", killed outside the resync: %d of %d", s.missed, s.trials)
	case "resync-disk-full":
		out += fmt.Sprintf(", disk filled outside the resync: %d of %d", s.missed, s.trials)
	case "resync-disk-error":
		out += fmt.Sprintf(", disk failed outside the resync: %d of %d", s.missed, s.trials)
	}
	return out
}

// campaign runs trials of each kind, kinds interleaved so that a change in
// the machine's load spreads over all of them, and sums them up per kind.
func campaign(ctx context.Context, s settings, selected []string, trials int, seed uint64, each func(result)) []summary {
	sums := make([]summary, len(selected))
	for i, k := range selected {
		sums[i].kind = k
	}
	for n := range trials {
		for i, k := range selected {
			if ctx.Err() != nil {
				return sums
			}
			r := runTrial(ctx, s, k, n+1, seed)
			each(r)
			sm := &sums[i]
			sm.trials++
			sm.violations += r.violations
			sm.lost += r.lost
			if r.stalled {
				sm.stalled++
			}
			if r.statusRegress {
				sm.statusRegress++
			}
			if r.missed {
				sm.missed++
			}
			if r.err != nil {
				sm.errors++
			}
			sm.maxCatchUp = max(sm.maxCatchUp, r.catchUp)
		}
	}
	return sums
}

func printTrial(w io.Writer, r result, verbose bool) {
	status := "ok"
	switch {
	case r.err != nil:
		status = "ERROR: " + r.err.Error()
	case r.violations > 0 || r.lost > 0:
		status = fmt.Sprintf("FAIL: violations %d, lost %d", r.violations, r.lost)
	case r.stalled:
		status = "STALLED"
	}
	fmt.Fprintf(w, "%-14s #%-3d %s (catch-up %s)\n", r.kind, r.n, status, r.catchUp.Round(time.Millisecond))
	if verbose || status != "ok" || r.statusRegress || r.missed {
		for _, n := range r.notes {
			fmt.Fprintf(w, "    %s\n", n)
		}
	}
}

// buildDuplex builds cmd/duplex of the module this command is part of.
func buildDuplex(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "duplex")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "duplex/cmd/duplex")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build duplex/cmd/duplex: %v\n%s", err, b)
	}
	return out, nil
}
