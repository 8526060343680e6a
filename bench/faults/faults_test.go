package main

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/bench/harness"
	"duplex/control"
	"duplex/workload"
)

// TestCampaign is the short campaign CI runs: two trials of every fault kind
// it can run against the built binary (go run ./bench/faults runs longer
// ones).
func TestCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault campaign runs both sites as processes for about a minute; skipped with -short")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin := testBinary(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (go run ./bench/faults -seed %d repeats the fault timings)", seed, seed)
	s := settings{bin: bin, dir: dir, warm: time.Second, drain: 15 * time.Second, catchUp: 15 * time.Second}
	var selected []string
	for _, k := range kinds {
		if err := canRun(k); err != nil {
			t.Logf("%s left out: %v", k, err)
			continue
		}
		selected = append(selected, k)
	}
	sums := campaign(ctx, s, selected, 2, seed, func(r result) {
		var b strings.Builder
		printTrial(&b, r, true)
		t.Log(strings.TrimSpace(b.String()))
	})
	for _, sm := range sums {
		t.Log(sm)
		if sm.missed > 0 {
			// Not a failure: that kill tested less, not something wrong.
			t.Logf("%s: %d kill(s) came outside the resync", sm.kind, sm.missed)
		}
		if sm.trials != 2 {
			t.Errorf("%s: %d trials ran, want 2", sm.kind, sm.trials)
		}
		if sm.violations > 0 || sm.lost > 0 || sm.errors > 0 {
			t.Errorf("%s", sm)
		}
		if sm.stalled > 0 {
			// A stall is a liveness failure, not a broken invariant. A bit
			// flipped in a frame's length prefix can stall the link for
			// minutes: the receiver waits for a frame of the corrupted
			// length and nothing times the link out (see bench/RESULTS.md).
			// Until that is fixed in transport/mover, failing here would
			// fail CI at random; the command (go run ./bench/faults) does
			// exit 1 on it.
			if stallsFail {
				t.Errorf("%s", sm)
			} else {
				t.Logf("KNOWN ISSUE, not failing the test: %s", sm)
			}
		}
	}
}

// stallsFail makes a stall fail TestCampaign: a corrupted length prefix no
// longer stalls the link (the mover redials when the secondary falls silent,
// and both ends close a stream that yields corrupt frames in a row).
const stallsFail = true

// TestChecksDetect is the campaign's negative control: a secondary image
// that lacks a dependency is counted as a violation, and a block that differs
// from a cleanly drained primary as lost.
func TestChecksDetect(t *testing.T) {
	dir := t.TempDir()
	sess, err := harness.NewSession(dir, harness.Spec{Subsystems: subsystems, VolumesPerSubsystem: volsPerSS, VolumeSize: 2 * regionBytes})
	if err != nil {
		t.Fatal(err)
	}
	l := workload.Layout{Volumes: subsystems * volsPerSS, BlocksPerVolume: regionBlocks, Clients: clients, FirstClient: 7}
	// Write 1 of client 8 on volume 0 block 0; write 2 on volume 3 block 1
	// depends on it. Both sites hold both, except that the secondary lost
	// write 1.
	a := workload.Ref{Client: 8, Counter: 1, Volume: 0, Block: 0}
	b := workload.Ref{Client: 8, Counter: 2, Volume: 3, Block: 1}
	for site, paths := range [][]string{sess.PrimaryPaths(), sess.SecondaryPaths()} {
		for _, p := range paths {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, make([]byte, 2*regionBytes), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, blk := range []workload.Block{{Ref: a}, {Ref: b, Deps: [2]workload.Ref{a}}} {
			if site == 1 && blk.Ref == a {
				continue
			}
			buf := make([]byte, workload.BlockSize)
			workload.Encode(buf, blk)
			f, err := os.OpenFile(paths[blk.Volume], os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(buf, int64(blk.Block)*workload.BlockSize); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	r := &result{}
	tr := &trial{r: r, sess: sess, epochs: []epoch{{layout: l}}}
	if err := tr.checkSecondary("test"); err != nil {
		t.Fatal(err)
	}
	if r.violations != 1 {
		t.Errorf("violations = %d, want 1: %v", r.violations, r.notes)
	}
	n, err := harness.DiffBlocks(sess.PrimaryPaths()[0], sess.SecondaryPaths()[0], 0, regionBytes, workload.BlockSize)
	if err != nil || n != 1 {
		t.Errorf("DiffBlocks = %d, %v; want 1 block lost", n, err)
	}
	// The second region is empty: checking it must fail loudly, not pass.
	tr.epochs = []epoch{{layout: l, base: regionBytes}}
	if err := tr.checkSecondary("test"); err == nil {
		t.Error("checking a region without writes passed")
	}
}

// TestFaultComesOnceEveryPairIsDuplex checks that a trial injects its fault
// only once every pair has completed its first copy. A volume in its very
// first copy has no consistent state (the secondary says so and holds no
// other volume for it): a secondary killed then and recovered mixes copied
// and uncopied regions of it, which the dependent-write check would count as
// violations of a promise the session never made for that volume. The link
// is slowed so that the first copies take seconds.
func TestFaultComesOnceEveryPairIsDuplex(t *testing.T) {
	if testing.Short() {
		t.Skip("runs both sites as processes; skipped with -short")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := testBinary(t)
	s := settings{bin: bin, dir: dir, catchUp: time.Minute, startRate: 2 << 20}
	tr := &trial{s: s, r: &result{kind: "secondary-kill", n: 1}, rng: rand.New(rand.NewPCG(1, 2))}
	defer tr.cleanup()
	ld, err := tr.begin(ctx, "secondary-kill")
	if err != nil {
		t.Fatal(err)
	}
	defer ld.stop()
	st, err := harness.FetchRunning(ctx, control.Endpoint{Addr: tr.sess.Config.Primary.Control})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range st.Volumes {
		if v.State != "duplex" {
			t.Errorf("%s is %s (%d of %d bytes copied) when the fault may come: its first copy is not complete",
				v.Name, v.State, v.CopiedBytes, v.SizeBytes)
		}
	}
}

var built struct {
	sync.Once
	dir, bin string
	err      error
}

// testBinary builds the duplex binary once for every test of the process,
// in a directory removed when the process ends (TestMain).
func testBinary(t *testing.T) string {
	t.Helper()
	built.Do(func() {
		dir, err := os.MkdirTemp("", "duplex-faults-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		built.bin, built.err = buildDuplex(ctx, dir)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}
