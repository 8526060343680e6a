package main

import (
	"strings"
	"testing"
	"time"

	"duplex/workload"
)

// TestADemoContinuedVerifies runs the demo twice on one directory, as its
// last line suggests ("run the demo again with --dir to continue it"). The
// second run's workload writes over blocks the first run's writes depend
// on; its check must still find the secondary consistent, as it is.
func TestADemoContinuedVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo twice")
	}
	dir := t.TempDir()
	for run := 1; run <= 2; run++ {
		cmd, out, pw := startDemo(t, "demo", "--dir", dir, "--port-base", "0")
		// Long enough for the workload to write over much of its region.
		for deadline := time.Now().Add(30 * time.Second); strings.Count(out.String(), "consistent as of") < 3; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: no status lines:\n%s", run, out.String())
			}
		}
		interruptDemo(t, cmd, out, pw, 4, "the secondary")
	}
}

// TestDemoRunsScopeStillFindsViolations: the check of a continued demo
// lets a later run's write meet an earlier run's dependency at its place,
// and excuses nothing else: a write of the latest run whose dependency's
// place holds an earlier run's write, and a write whose dependency's place
// holds a write of its own run by another client, are violations.
func TestDemoRunsScopeStillFindsViolations(t *testing.T) {
	layout := workload.Layout{Volumes: 1, BlocksPerVolume: 8, Clients: 4, FirstClient: 4}
	at := func(client uint32, counter uint64, block uint32) workload.Ref {
		return workload.Ref{Client: client, Counter: counter, Block: block}
	}
	img := workload.Image{make([]workload.Block, layout.BlocksPerVolume)}
	put := func(r workload.Ref, dep workload.Ref) {
		img[0][r.Block] = workload.Block{Ref: r, Deps: [2]workload.Ref{dep}}
	}
	// The second run's client 5 holds its write 2, whose dependency (its
	// write 1) was never copied: its place holds the first run's write.
	put(at(5, 2, 0), at(5, 1, 1))
	put(at(1, 3, 1), workload.Ref{})
	// The first run's client 2: its dependency's place holds a write of
	// that run's client 3.
	put(at(2, 5, 2), at(2, 4, 3))
	put(at(3, 1, 3), workload.Ref{})
	// The first run's client 1: its dependency's place holds a write of
	// the second run, made after it: met.
	put(at(1, 2, 4), at(1, 1, 5))
	put(at(6, 1, 5), workload.Ref{})
	vs := img.Violations(img, demoRuns(layout))
	var got []string
	for _, v := range vs {
		got = append(got, v.String())
	}
	if len(vs) != 2 || vs[0].Holder != at(5, 2, 0) || vs[1].Holder != at(2, 5, 2) {
		t.Errorf("violations %q; want write 5/2 and write 2/5, and write 1/2 met by the later run", got)
	}
}
