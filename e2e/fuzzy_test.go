package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/bench/harness"
	"duplex/consistency"
	"duplex/control"
	"duplex/nbd"
	"duplex/workload"
)

// The randomized operations test, in the spirit of hashicorp/raft's fuzzy
// harness: both sites run as duplex processes with a TCP proxy between them,
// a dependent-write client writes to every volume, and a seeded random
// sequence of operations is applied to the session: pair suspend, resume,
// delete and add, link down and up, a link that hangs (packets dropped, no
// reset) and comes back, bits flipped in the stream, either site frozen
// (SIGSTOP) for a while, kill -9 of either site, also in the middle of a
// resync, steps of the primary's clock forward and back, and (as root) the
// secondary's journal file system full and freed. After every step the
// secondary is checked:
//
//   - the dependent-write invariant over the volumes in the consistency group,
//     through the secondary's read-only exports while it runs, and on its
//     images after `duplex recover` when it was killed;
//   - nothing journaled is lost by a kill -9 of the secondary;
//   - at each quiesce (writes stopped, link up, every pair resumed or added
//     and duplex, the secondary past that moment): the secondary is
//     byte-identical with the primary, so no acknowledged write was lost;
//   - never stuck: stopping the writes, the pairs becoming duplex and the
//     secondary catching up all finish within bounds;
//   - neither daemon exits by itself, but for the secondary on a full disk;
//   - no stamp goes back, across clock steps and restarts: the secondary
//     never refuses a record set as stamped at or before its consistency
//     time (only a primary that lost its timer's mark sends one);
//   - every pair operation the primary acknowledged survives its kill -9.
//
// A volume is in the consistency group while its pair is duplex, from the
// first status that shows it duplex on: a suspended, pending or deleted
// pair's copy legitimately lags the others. Its volumes are small (2 MiB), so
// a primary crash never logs more regions than one record set carries.
//
// A clock step moves the clock of the primary's common timer, the one its
// stamps come from, off the wall clock by up to 3s either way (the primary
// reads the offset from a file, timer.StepFile); a primary restarted after
// kill -9 keeps the offset, as a host keeps its clock. Stamps must keep the
// order of dependent writes across every step: the checks above hold, with
// the quiesce point taken on the primary's clock.
//
// DUPLEX_FUZZY_SEED=N replays a run's sequence of operations (the timing of
// the processes is not replayed, so a failure that depends on it may need a
// few runs). DUPLEX_FUZZY_STEPS=N changes the number of steps; with
// DUPLEX_FUZZY_LONG=10m the test runs for that long instead.
// DUPLEX_FUZZY_WITHOUT=kill-primary,disk leaves operation kinds out (see
// opKind; clock for the clock steps), to look past a known failure.

const (
	fuzzVolumes    = 4 // 2 subsystems × 2 volumes, as the demo
	fuzzBlocks     = 512
	fuzzClients    = 4
	fuzzVolumeSize = fuzzBlocks * workload.BlockSize
	// Client numbers of workload run r are r*fuzzRunClients+1...: Run of a
	// client is its number divided by fuzzRunClients.
	fuzzRunClients = 100
)

func TestOperationsFuzzy(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs both sites as processes for a few minutes; skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DUPLEX_FUZZY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DUPLEX_FUZZY_SEED=%q: %v", s, err)
		}
		seed = v
	}
	steps := 200
	if s := os.Getenv("DUPLEX_FUZZY_STEPS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("DUPLEX_FUZZY_STEPS=%q: %v", s, err)
		}
		steps = v
	}
	var until time.Time
	if s := os.Getenv("DUPLEX_FUZZY_LONG"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("DUPLEX_FUZZY_LONG=%q: %v", s, err)
		}
		until, steps = time.Now().Add(d), 1<<30
	}
	t.Logf("seed %d (DUPLEX_FUZZY_SEED=%d go test -run TestOperationsFuzzy ./e2e/ replays its operations)", seed, seed)
	f := newFuzzer(t, seed)
	defer f.close()
	for i := 0; i < steps && (until.IsZero() || time.Now().Before(until)); i++ {
		f.step = i
		if i > 0 && i%40 == 0 {
			f.do("quiesce", f.quiesce)
			continue
		}
		f.randomStep()
	}
	f.do("quiesce", f.quiesce)
	t.Logf("seed %d: %d steps, %d quiesces, %d checks (%d volumes checked as of a time of their own before the session's), %d writes acknowledged; operations: %s",
		seed, f.step+1, f.quiesces, f.checks, f.ownTime, f.acked, f.counts())
}

// fuzzer is one randomized run.
type fuzzer struct {
	t     *testing.T
	seed  uint64
	rng   *rand.Rand
	bin   string
	sess  *harness.Session
	proxy *harness.Proxy
	prim  *harness.Daemon
	sec   *harness.Daemon
	watch *pairWatch
	// The primary's clock: clockOffset off the wall clock since the last
	// clock step, and at clockPeak at the latest before it. stampBound is
	// above every stamp of the primary up to its clock's reading: a
	// restarted primary stamps from its timer's mark on, which can lead its
	// clock.
	clockOffset time.Duration
	clockPeak   time.Time
	stampBound  time.Time
	// secLogRead is how far checkStamps read the secondary's log.
	secLogRead int

	load *fuzzLoad
	run  int // workload runs started

	// The operations' model of the session: what was asked, not what the
	// daemons report.
	linkDown bool
	hung     bool // the link is down by a hang, not a cut
	// silentEnd is when the last hang of the link or freeze of a site ended:
	// writes may wait for the mover's silence time on top of fuzzStall
	// around one (see stallBound).
	silentEnd time.Time
	suspended map[string]bool // by hand
	deleted   map[string]bool
	// fs is a small file system of the secondary's journal alone, which a
	// filler file makes full; "" when it cannot be mounted (not root).
	fs       string
	diskFull bool

	// without are the operation kinds left out (DUPLEX_FUZZY_WITHOUT).
	without map[string]bool

	step     int
	history  []string
	ops      map[string]int
	quiesces int
	checks   int
	ownTime  int // volumes checked as of their own time, before the session's
	acked    int64
}

func newFuzzer(t *testing.T, seed uint64) *fuzzer {
	f := &fuzzer{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x6675_7a7a_79)), bin: duplexBinary(t),
		suspended: map[string]bool{}, deleted: map[string]bool{}, ops: map[string]int{}, without: map[string]bool{}}
	for _, k := range strings.Split(os.Getenv("DUPLEX_FUZZY_WITHOUT"), ",") {
		if k = strings.TrimSpace(k); k != "" {
			f.without[k] = true
		}
	}
	dir := t.TempDir()
	journal := ""
	if fs, err := mountJournalFS(t, filepath.Join(dir, "journalfs")); err != nil {
		t.Logf("no disk-full operations: %v", err)
	} else {
		f.fs, journal = fs, filepath.Join(fs, "journal")
	}
	var err error
	f.sess, err = harness.NewSession(filepath.Join(dir, "s"), harness.Spec{
		Session: "fuzzy", Subsystems: 2, VolumesPerSubsystem: 2, VolumeSize: fuzzVolumeSize,
		SidefileLimit: 2 << 20, Interval: 10 * time.Millisecond, SecondaryNBD: true, Proxy: true, Token: true,
		SuspendAfter: time.Second, Journal: journal, ClockStep: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.proxy, err = harness.NewProxy(f.sess.LinkAddr, f.sess.Config.Secondary.Listen); err != nil {
		t.Fatal(err)
	}
	f.watch = newPairWatch(f.sess.Config.Primary.Control, f.sess.Volumes)
	f.startSecondary()
	f.startPrimary()
	f.startLoad()
	return f
}

func (f *fuzzer) close() {
	if f.load != nil {
		f.load.abort()
	}
	f.watch.stop()
	for _, d := range []*harness.Daemon{f.prim, f.sec} {
		if d != nil {
			d.Kill()
		}
	}
	f.proxy.Close()
	if f.t.Failed() {
		for _, d := range []*harness.Daemon{f.prim, f.sec} {
			if d != nil {
				f.t.Logf("log of %s (%s):\n%s", d.Name, d.LogPath, d.LogTail(8000))
			}
		}
	}
}

// fail ends the run with the seed, the steps that led here and the symptom.
func (f *fuzzer) fail(format string, args ...any) {
	f.t.Helper()
	from := max(0, len(f.history)-40)
	f.dumpDaemons()
	f.t.Fatalf("seed %d, step %d: %s\nlast steps:\n  %s\nreplay: DUPLEX_FUZZY_SEED=%d go test -run TestOperationsFuzzy ./e2e/",
		f.seed, f.step, fmt.Sprintf(format, args...), strings.Join(f.history[from:], "\n  "), f.seed)
}

// dumpDaemons saves, for a failure, each running daemon's goroutines as its
// control address serves them, and its log, in the test's artifact directory
// (go test -artifacts keeps it): a site found stuck shows there what it
// waited on.
func (f *fuzzer) dumpDaemons() {
	dir := f.t.ArtifactDir()
	for _, d := range []struct {
		d    *harness.Daemon
		addr string
	}{{f.prim, f.sess.Config.Primary.Control}, {f.sec, f.sess.Config.Secondary.Control}} {
		if d.d == nil {
			continue
		}
		if !d.d.Exited() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			b, err := fetchURL(ctx, "http://"+d.addr+"/debug/pprof/goroutine?debug=2")
			cancel()
			if err != nil {
				b = []byte(err.Error())
			}
			os.WriteFile(filepath.Join(dir, d.d.Name+".goroutines"), b, 0o644)
		}
		if b, err := os.ReadFile(d.d.LogPath); err == nil {
			os.WriteFile(filepath.Join(dir, d.d.Name+".log"), b, 0o644)
		}
	}
	f.t.Logf("goroutines and logs of the daemons: %s", dir)
}

func (f *fuzzer) logStep(s string) {
	line := fmt.Sprintf("%3d %s %s", f.step, time.Now().Format("15:04:05.000"), s)
	f.history = append(f.history, line)
	if testing.Verbose() {
		f.t.Log(line)
	}
}

// do runs one operation and checks the secondary after it.
func (f *fuzzer) do(name string, op func()) {
	f.t.Helper()
	f.ops[strings.Fields(name)[0]]++
	f.logStep(name)
	op()
	if f.load != nil {
		if d := time.Since(time.Unix(0, f.load.lastAck.Load())); d > f.stallBound() {
			f.fail("stuck: no write acknowledged for %s (link down: %v, secondary running: %v, disk full: %v)",
				d.Round(time.Millisecond), f.linkDown, !f.sec.Exited(), f.diskFull)
		}
	}
	if f.prim.Exited() {
		f.fail("the primary exited with %d: %s", f.prim.ExitCode(), lastLines(f.prim.LogTail(2000), 3))
	}
	f.checkStamps()
	if f.sec.Exited() {
		if !f.diskFull {
			f.fail("the secondary exited with %d: %s", f.sec.ExitCode(), lastLines(f.sec.LogTail(2000), 3))
		}
		return
	}
	f.checkLive()
}

// checkStamps fails if the secondary refused a record set as stamped at or
// before its consistency time since the last step. The primary's timer keeps
// its stamps increasing across clock steps and restarts; a stamp that went
// back would break the order of dependent writes in the groups, or, where
// the secondary sees it, suspend the pairs (its last defence, which then
// hides the fault from the other checks).
func (f *fuzzer) checkStamps() {
	f.t.Helper()
	b, err := os.ReadFile(f.sec.LogPath)
	if err != nil {
		f.t.Fatal(err)
	}
	if f.secLogRead > len(b) {
		f.secLogRead = 0
	}
	text := string(b[f.secLogRead:])
	f.secLogRead = len(b)
	if i := strings.Index(text, consistency.ErrStale.Error()); i >= 0 {
		line := text[strings.LastIndexByte(text[:i], '\n')+1:]
		if j := strings.IndexByte(line, '\n'); j >= 0 {
			line = line[:j]
		}
		f.fail("a stamp of the primary went back (the primary's clock is %v off the wall clock): the secondary says %s", f.clockOffset, line)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// mountJournalFS mounts a tmpfs for the secondary's journal: large enough for
// journal segments of 64 MiB, small enough to fill at once.
func mountJournalFS(t *testing.T, dir string) (string, error) {
	if os.Getenv("DUPLEX_FUZZY_NO_DISK_FULL") != "" {
		return "", errors.New("DUPLEX_FUZZY_NO_DISK_FULL is set")
	}
	unmount, err := harness.MountTmpfs(dir, 192<<20)
	if err != nil {
		return "", err
	}
	t.Cleanup(func() {
		if err := unmount(); err != nil {
			t.Log(err)
		}
	})
	return dir, nil
}

// fillDisk fills the journal's file system.
func (f *fuzzer) fillDisk() {
	if err := harness.FillDisk(f.fs); err != nil {
		f.t.Fatal(err)
	}
	f.diskFull = true
}

// freeDisk removes the filler and restarts the secondary.
func (f *fuzzer) freeDisk() {
	if err := harness.FreeDisk(f.fs); err != nil {
		f.t.Fatal(err)
	}
	f.diskFull = false
	// A secondary that met the full disk stays stopped until restarted, as
	// the operator does once space is freed.
	if f.sec.Exited() {
		f.logStep(fmt.Sprintf("    the secondary had exited (%d): %s", f.sec.ExitCode(), lastLines(f.sec.LogTail(2000), 2)))
	} else if code := f.sec.Stop(30 * time.Second); code != 0 {
		f.fail("the secondary did not stop cleanly on SIGTERM (exit %d): %s", code, lastLines(f.sec.LogTail(2000), 3))
	}
	f.startSecondary()
}

func (f *fuzzer) counts() string {
	var parts []string
	for k, v := range f.ops {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	return strings.Join(parts, ", ")
}

// randomStep picks an operation that makes sense in the model's state.
func (f *fuzzer) randomStep() {
	type choice struct {
		weight int
		name   string
		op     func()
	}
	var cs []choice
	add := func(w int, name string, op func()) {
		if !f.without[opKind(name)] {
			cs = append(cs, choice{w, name, op})
		}
	}
	add(30, "write", func() { time.Sleep(time.Duration(50+f.rng.IntN(250)) * time.Millisecond) })
	for _, v := range f.sess.Volumes {
		switch {
		case f.deleted[v]:
			add(4, "add "+v, func() { f.pairOp(v, "add") })
		case f.suspended[v]:
			add(3, "resume "+v, func() { f.pairOp(v, "resume") })
			add(1, "delete "+v, func() { f.pairOp(v, "delete") })
		default:
			add(2, "suspend "+v, func() { f.pairOp(v, "suspend") })
			add(1, "delete "+v, func() { f.pairOp(v, "delete") })
		}
	}
	add(2, "suspend --all", func() { f.pairAll("suspend") })
	add(2, "resume --all", func() { f.pairAll("resume") })
	if f.linkDown {
		add(8, "link up", f.linkUp)
	} else {
		add(2, "hang link", func() {
			f.proxy.Hang()
			f.linkDown, f.hung = true, true
			// Past the mover's silence time, at times, so that it gives
			// the connection up, and the session suspends its pairs.
			time.Sleep(time.Duration(f.rng.IntN(8000)) * time.Millisecond)
		})
		add(4, "link down", func() {
			f.proxy.Cut()
			f.linkDown = true
			// Long enough, at times, for the session to suspend its pairs.
			time.Sleep(time.Duration(f.rng.IntN(3000)) * time.Millisecond)
		})
	}
	add(2, "corrupt", f.corrupt)
	add(3, "clock step", f.stepClock)
	add(3, "kill -9 primary", f.killPrimary)
	add(3, "kill -9 secondary", f.killSecondary)
	add(1, "freeze primary", func() { f.freeze(f.prim, 4000) })
	if !f.diskFull {
		add(1, "freeze secondary", func() { f.freeze(f.sec, 8000) })
	}
	if len(f.suspended) > 0 && !f.linkDown && !f.diskFull {
		add(2, "resync-kill primary", func() { f.killMidResync(f.killPrimary) })
		add(2, "resync-kill secondary", func() { f.killMidResync(f.killSecondary) })
	}
	switch {
	case f.fs == "":
	case f.diskFull:
		add(6, "disk free", f.freeDisk)
	default:
		add(2, "disk full", f.fillDisk)
	}
	total := 0
	for _, c := range cs {
		total += c.weight
	}
	n := f.rng.IntN(total)
	for _, c := range cs {
		if n -= c.weight; n < 0 {
			f.do(c.name, c.op)
			return
		}
	}
}

// opKind names an operation for DUPLEX_FUZZY_WITHOUT: "suspend v001" is
// suspend, "suspend --all" suspend-all, "kill -9 primary" kill-primary,
// "freeze secondary" freeze-secondary, "resync-kill primary"
// resync-kill-primary, "link down" link, "hang link" hang.
func opKind(name string) string {
	w := strings.Fields(name)
	switch {
	case len(w) == 2 && w[1] == "--all":
		return w[0] + "-all"
	case w[0] == "kill":
		return "kill-" + w[len(w)-1]
	case w[0] == "freeze" || w[0] == "resync-kill":
		return w[0] + "-" + w[1]
	}
	return w[0]
}

// pairOp asks the primary's control API for a pair operation, as `duplex
// pair` does. A refusal is logged, not a failure: the model may disagree with
// the daemon about a pair the session suspended by itself.
func (f *fuzzer) pairOp(vol, op string) error {
	f.t.Helper()
	token, err := control.ReadToken(f.sess.Config.TokenPath())
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := control.PairOp(ctx, control.Endpoint{Addr: f.sess.Config.Primary.Control}, token, vol, op, false); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			f.fail("stuck: pair %s %s did not answer in 30s", op, vol)
		}
		f.logStep(fmt.Sprintf("    %s %s refused: %v", op, vol, err))
		return err
	}
	switch op {
	case "suspend":
		f.suspended[vol] = true
	case "resume":
		delete(f.suspended, vol)
	case "delete":
		f.deleted[vol] = true
		delete(f.suspended, vol)
	case "add":
		delete(f.deleted, vol)
	}
	return nil
}

// resumeInconsistent takes the operator's way out of a resync that the
// secondary's journal cannot hold: `duplex pair resume --inconsistent`.
func (f *fuzzer) resumeInconsistent(vol string) {
	f.t.Helper()
	f.ops["resume-inconsistent"]++
	f.logStep("    resume --inconsistent " + vol)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, f.bin, "pair", "resume", "--inconsistent", vol, "--config", f.sess.ConfigPath).CombinedOutput()
	if ctx.Err() != nil {
		f.fail("stuck: duplex pair resume --inconsistent %s did not return in 30s", vol)
	}
	if err != nil {
		// An automatic resume may have raced it.
		f.logStep(fmt.Sprintf("    resume --inconsistent %s: %v: %s", vol, err, strings.TrimSpace(string(out))))
		return
	}
	delete(f.suspended, vol)
}

// pairAll runs `duplex pair OP --all` through the CLI.
func (f *fuzzer) pairAll(op string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, f.bin, "pair", op, "--all", "--config", f.sess.ConfigPath).CombinedOutput()
	if ctx.Err() != nil {
		f.fail("stuck: duplex pair %s --all did not return in 30s", op)
	}
	if err != nil {
		// --all stops at the first volume it cannot change (a deleted one,
		// say): the model follows what the daemon reports.
		f.logStep(fmt.Sprintf("    pair %s --all: %v: %s", op, err, strings.TrimSpace(string(out))))
	}
	for _, v := range f.sess.Volumes {
		done := strings.Contains(string(out), v+": "+op+" requested")
		switch {
		case done && op == "suspend":
			f.suspended[v] = true
		case done && op == "resume":
			delete(f.suspended, v)
		}
	}
}

// killPrimary kills the primary and starts it again: every pair operation
// it acknowledged must have survived.
func (f *fuzzer) killPrimary() {
	f.prim.Kill()
	f.stopLoad(true)
	time.Sleep(time.Duration(f.rng.IntN(500)) * time.Millisecond)
	f.startPrimary()
	listed := map[string]control.VolumeStatus{}
	for _, vs := range f.primaryStatus().Volumes {
		listed[vs.Name] = vs
	}
	for _, v := range f.sess.Volumes {
		vs, ok := listed[v]
		switch {
		case f.deleted[v] && ok:
			f.fail("pair operation lost by kill -9 of the primary: %s was deleted, and is a pair again (%s) after the restart", v, vs.State)
		case !f.deleted[v] && !ok:
			f.fail("pair operation lost by kill -9 of the primary: %s was added, and is not a pair after the restart", v)
		case f.suspended[v] && vs.State != "suspended":
			f.fail("pair operation lost by kill -9 of the primary: %s was suspended, and is %s after the restart", v, vs.State)
		case !f.deleted[v] && !f.suspended[v] && vs.State == "suspended" && !vs.Auto:
			// A suspension the session made itself (auto) is legitimate;
			// `suspend --all` names the pairs whose suspension it made the
			// operator's, and the model follows its answer.
			f.fail("pair operation lost by kill -9 of the primary: %s was resumed, and is suspended again after the restart", v)
		}
	}
	f.startLoad()
}

// linkUp ends a cut or a hang of the link.
func (f *fuzzer) linkUp() {
	f.proxy.Restore()
	if f.hung {
		f.silentEnd = time.Now()
	}
	f.linkDown, f.hung = false, false
}

// stallBound is how long writes may go without an acknowledgement now: a
// hung link or a frozen site is a link down only once the mover's silence
// time has passed without an answer, and suspend_after counts from then.
func (f *fuzzer) stallBound() time.Duration {
	if f.hung || time.Since(f.silentEnd) < fuzzStall+fuzzSilence {
		return fuzzStall + fuzzSilence
	}
	return fuzzStall
}

// corrupt flips bits in the stream between the sites, one way or the
// other: inside frames (their CRC catches it), or in a length prefix, so
// that the receiver loses the frame boundaries.
func (f *fuzzer) corrupt() {
	dir, way := harness.ToSecondary, "to the secondary"
	if f.rng.IntN(2) == 0 {
		dir, way = harness.ToPrimary, "to the primary"
	}
	if f.rng.IntN(2) == 0 {
		f.proxy.CorruptLength(dir)
		f.logStep("    a length prefix " + way)
	} else {
		n := 1 + f.rng.IntN(3)
		f.proxy.Corrupt(dir, n)
		f.logStep(fmt.Sprintf("    %d bits %s", n, way))
	}
	time.Sleep(time.Duration(50+f.rng.IntN(250)) * time.Millisecond)
}

// freeze stops d (SIGSTOP) for up to maxMs milliseconds and lets it run
// again: a host that stalls (swapping, a hung hypervisor) with its
// connections open. A frozen secondary is a link down once the primary's
// mover has heard nothing for its silence time; a frozen primary's timer
// finds its clock past its lease when it runs again.
func (f *fuzzer) freeze(d *harness.Daemon, maxMs int) {
	f.t.Helper()
	if d.Exited() {
		f.logStep("    " + d.Name + " not running")
		return
	}
	if err := d.Freeze(); err != nil {
		f.fail("freeze %s: %v", d.Name, err)
	}
	frozen := time.Duration(f.rng.IntN(maxMs)) * time.Millisecond
	f.logStep(fmt.Sprintf("    frozen %s", frozen))
	time.Sleep(frozen)
	if err := d.Thaw(); err != nil {
		f.fail("thaw %s: %v", d.Name, err)
	}
	f.silentEnd = time.Now()
}

// fuzzResyncRate is the link's bandwidth while a resync-kill resyncs: the
// resync of a few hundred KiB then lasts long enough for a kill at a random
// moment to land inside it.
const fuzzResyncRate = 512 << 10

// killMidResync resumes every pair over a slowed link and kills a site
// (kill) at a random moment of the resync that follows.
func (f *fuzzer) killMidResync(kill func()) {
	f.t.Helper()
	f.proxy.SetRate(fuzzResyncRate)
	defer f.proxy.SetRate(0)
	f.pairAll("resume")
	time.Sleep(time.Duration(f.rng.IntN(1500)) * time.Millisecond)
	var copying []string
	for _, vs := range f.primaryStatus().Volumes {
		if vs.State != "duplex" {
			copying = append(copying, fmt.Sprintf("%s %s %d/%d", vs.Name, vs.State, vs.CopiedBytes, vs.SizeBytes))
		}
	}
	f.logStep(fmt.Sprintf("    killing with %v", copying))
	kill()
}

var fuzzRecoverRE = regexp.MustCompile(`consistent as of (\S+) \(group (\d+)\)`)

// killSecondary kills the secondary, recovers its volumes as an operator
// would, checks them, and restarts it; writes go on at the primary.
func (f *fuzzer) killSecondary() {
	st, _ := fetchStatus(f.sess.Config.Secondary.Control)
	f.sec.Kill()
	if f.diskFull {
		// It stays down until the disk is freed: recover needs room too.
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, f.bin, "recover", "--config", f.sess.ConfigPath).CombinedOutput()
	if err != nil {
		f.fail("duplex recover after kill -9 of the secondary: %v\n%s", err, out)
	}
	var ct time.Time
	var group uint64
	if m := fuzzRecoverRE.FindSubmatch(out); m != nil {
		ct, _ = time.Parse(time.RFC3339Nano, string(m[1]))
		group, _ = strconv.ParseUint(string(m[2]), 10, 64)
	}
	if st.Group != nil && group < *st.Group {
		f.fail("journaled group lost: the secondary's status reported group %d journaled before kill -9; recover came back at group %d\n%s",
			*st.Group, group, out)
	}
	im, err := harness.OpenImages(f.sess.SecondaryPaths())
	if err != nil {
		f.t.Fatal(err)
	}
	defer im.Close()
	img, bad, err := workload.ReadImage(f.layout(), im.Reader(0))
	if err != nil {
		f.t.Fatal(err)
	}
	if !ct.IsZero() && !fuzzRecoverLineRE.Match(out) {
		f.fail("duplex recover printed no line per volume, so the check cannot tell which volumes it holds consistent:\n%s", out)
	}
	times := recoveredTimes(out)
	f.logStep(fmt.Sprintf("    recovered: group %d, volumes' own consistency times %v", group, times))
	f.checkImage("after kill -9 of the secondary and recover", img, img, bad, atTime(f.watch.group(ct, nil, nil), f.sess.Volumes, times, ct))
	time.Sleep(time.Duration(f.rng.IntN(700)) * time.Millisecond)
	f.startSecondary()
}

// layout covers every run: the check maps clients to runs itself.
func (f *fuzzer) layout() workload.Layout {
	return workload.Layout{Volumes: fuzzVolumes, BlocksPerVolume: fuzzBlocks, Clients: fuzzClients}
}

// checkLive checks the running secondary through its read-only exports. The
// exports serve whole groups, but reading four volumes takes many requests
// while groups go on being applied: the holders are read first, their
// dependencies in a second pass (see workload.Image.Violations).
func (f *fuzzer) checkLive() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	st1, err1 := fetchRunning(ctx, control.Endpoint{Addr: f.sess.Config.Primary.Control})
	sst, err2 := fetchRunning(ctx, control.Endpoint{Addr: f.sess.Config.Secondary.Control})
	cancel()
	if err1 != nil || err2 != nil {
		if f.diskFull && err1 == nil {
			f.logStep(fmt.Sprintf("    not checked: %v", err2))
			return
		}
		f.fail("status: %v", errors.Join(err1, err2))
	}
	ct, _ := time.Parse(time.RFC3339Nano, sst.ConsistencyTime)
	holders, bad, err := f.readSecondary()
	var deps workload.Image
	if err == nil {
		deps, _, err = f.readSecondary()
	}
	if err != nil {
		if f.diskFull {
			// The secondary stops on a full disk, here while it was read.
			f.logStep(fmt.Sprintf("    not checked: %v", err))
			return
		}
		f.fail("reading the secondary's exports: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	st2, err := fetchRunning(ctx, control.Endpoint{Addr: f.sess.Config.Primary.Control})
	sst2, err2 := fetchRunning(ctx, control.Endpoint{Addr: f.sess.Config.Secondary.Control})
	cancel()
	if err != nil {
		f.fail("status: %v", err)
	}
	after := map[string]time.Time{}
	if err2 == nil {
		after = secondaryTimes(sst2)
	}
	times := stableTimes(secondaryTimes(sst), after, ct)
	f.checkImage("through the secondary's exports", holders, deps, bad, atTime(f.watch.group(ct, &st1, &st2), f.sess.Volumes, times, ct))
}

// atTime returns the volumes to check, each with the time as of which the
// secondary reports its copy consistent (times maps a volume to that time):
// those of group it reports consistent as of ct or later, as of ct; and
// every volume it reports consistent as of a time before ct (a suspension
// time, or the copy from before a resync), as of that time. A volume of
// group reported as of ct or later is checked with the session only: the
// primary makes a pair duplex once the secondary journaled its copy's end,
// which a resync of another volume can hold unapplied, so a volume duplex
// at the primary since just before such a ct can still be held, at the
// secondary, at its copy from before its resync, consistent only as of its
// suspension; its reported time says which. Whether it was duplex before
// ct is judged on the primary's timer (see pairWatch.group).
func atTime(group map[int]bool, vols []string, times map[string]time.Time, ct time.Time) map[int]time.Time {
	out := map[int]time.Time{}
	for i, v := range vols {
		t, ok := times[v]
		switch {
		case !ok:
		case t.Before(ct):
			out[i] = t
		case group[i]:
			out[i] = ct
		}
	}
	return out
}

// stableTimes keeps of before the volumes reported as of ct or later, whose
// copies move forward together, and those reported as of an earlier time
// that after reports too: a copy read in between stayed as of that time (a
// suspended volume resumed and resynced meanwhile moved on).
func stableTimes(before, after map[string]time.Time, ct time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for v, t := range before {
		if a, ok := after[v]; !t.Before(ct) || ok && a.Equal(t) {
			out[v] = t
		}
	}
	return out
}

// secondaryTimes returns each volume's own consistency time in the
// secondary's status (none for a volume it reports not consistent).
func secondaryTimes(st control.Status) map[string]time.Time {
	out := map[string]time.Time{}
	for _, vs := range st.Volumes {
		if t, err := time.Parse(time.RFC3339Nano, vs.ConsistencyTime); err == nil {
			out[vs.Name] = t
		}
	}
	return out
}

// fuzzRecoverLineRE matches recover's line for one volume.
var fuzzRecoverLineRE = regexp.MustCompile(`(?m)^  \S+ \(\S+\): `)

// fuzzRecoverVolumeRE matches recover's line for one volume that is consistent.
var fuzzRecoverVolumeRE = regexp.MustCompile(`(?m)^  (\S+) \(\S+\): consistent as of (?:its suspension time )?(\S+)`)

// recoveredTimes returns each volume's own consistency time in the output of
// `duplex recover` (none for a volume it reports not consistent).
func recoveredTimes(out []byte) map[string]time.Time {
	times := map[string]time.Time{}
	for _, m := range fuzzRecoverVolumeRE.FindAllSubmatch(out, -1) {
		if t, err := time.Parse(time.RFC3339Nano, string(m[2])); err == nil {
			times[string(m[1])] = t
		}
	}
	return times
}

// checkImage fails on any dependent-write violation of the volumes of at,
// each consistent as of its own time: a write held by a volume needs its
// dependencies in every volume of at as of the same time or later (stamped
// before the write, they are stamped before that time too), and in none as
// of an earlier time, which rightly lacks what was written after it.
func (f *fuzzer) checkImage(when string, holders, deps workload.Image, bad []workload.Violation, at map[int]time.Time) {
	f.t.Helper()
	f.checks++
	var all []workload.Violation
	for _, v := range bad {
		if _, ok := at[int(v.Holder.Volume)]; ok {
			all = append(all, v)
		}
	}
	latest := time.Time{}
	for _, t := range at {
		if t.After(latest) {
			latest = t
		}
	}
	for h, th := range at {
		if th.Before(latest) {
			f.ownTime++
		}
		sc := workload.Scope{
			Outside: func(v int) bool {
				t, ok := at[v]
				return !ok || t.Before(th)
			},
			Run: func(c uint32) int { return int(c / fuzzRunClients) },
		}
		for _, v := range holders.Violations(deps, sc) {
			if int(v.Holder.Volume) == h {
				all = append(all, v)
			}
		}
	}
	if len(all) > 0 {
		var in []string
		for v := range fuzzVolumes {
			if t, ok := at[v]; ok {
				in = append(in, fmt.Sprintf("%s as of %s", f.sess.Volumes[v], t.Format(time.RFC3339Nano)))
			}
		}
		f.fail("dependent-write invariant broken %s (volumes checked: %v): %d blocks, first: %s",
			when, in, len(all), all[0])
	}
}

// readSecondary reads every volume through the secondary's exports.
func (f *fuzzer) readSecondary() (workload.Image, []workload.Violation, error) {
	var clients []*nbd.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, v := range f.sess.Volumes {
		c, err := nbd.Dial(f.sess.Config.Secondary.NBD, v)
		if err != nil {
			return nil, nil, err
		}
		clients = append(clients, c)
	}
	return workload.ReadImage(f.layout(), func(v int, p []byte, off int64) error { return clients[v].ReadAt(p, off) })
}

// quiesce stops the writes, heals every fault, makes every volume a duplex
// pair again and waits for the secondary to pass that moment: it must then
// be byte-identical with the primary.
//
// A pair seen duplex can still leave that state by the session's own doing
// before the secondary passes the moment: a primary whose link was down (a
// secondary stopped on a full disk, and restarted here while the primary
// backs off its dialing) with a full sidefile suspends every pair once
// suspend_after has passed, drops what it holds into the bitmaps, and
// resumes them when the link is back. The secondary's consistency time then
// moves past the moment while those resyncs are yet to copy what was
// dropped: its copy legitimately lags, and is compared only once a round
// sees every pair stay duplex from before the moment until the secondary
// passed it.
func (f *fuzzer) quiesce() {
	f.t.Helper()
	f.quiesces++
	if f.diskFull {
		f.freeDisk()
	}
	if f.linkDown {
		f.linkUp()
	}
	f.stopLoad(false)
	for _, v := range f.sess.Volumes {
		if f.deleted[v] {
			f.pairOp(v, "add")
		}
	}
	for round := 1; ; round++ {
		f.resumeAll()
		f.waitDuplex(time.Now().Add(60 * time.Second))
		duplexAt := time.Now()
		since := f.quiescePoint()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		_, err := harness.WaitStatus(ctx, f.sec, f.sess.Config.Secondary.Control, func(st control.Status) bool {
			ct, err := time.Parse(time.RFC3339Nano, st.ConsistencyTime)
			return err == nil && ct.After(since)
		})
		cancel()
		if err != nil {
			f.fail("stuck: the secondary's consistency time did not pass the quiesce point within 60s: %v", err)
		}
		left := f.leftDuplex(duplexAt)
		if len(left) == 0 {
			break
		}
		if round == 5 {
			f.fail("stuck: pairs left duplex by themselves after each of %d quiesce points, the writes stopped: %v", round, left)
		}
		f.logStep(fmt.Sprintf("    not duplex throughout, quiescing again: %v", left))
	}
	f.compare()
	f.startLoad()
}

// resumeAll resumes every suspended pair, by hand or by the session: an
// automatic resume may race this one, so a refusal is fine if the pair then
// becomes duplex. A resync the secondary's journal cannot hold (a hold left
// open by a suspension in the middle of a resync keeps every group journaled
// since, and a full disk can leave little room) is refused: the operator's
// way out is an inconsistent resync.
func (f *fuzzer) resumeAll() {
	f.t.Helper()
	for _, vs := range f.primaryStatus().Volumes {
		if vs.State == "suspended" {
			if err := f.pairOp(vs.Name, "resume"); err != nil && strings.Contains(err.Error(), "--inconsistent") {
				f.resumeInconsistent(vs.Name)
			}
		}
	}
}

// waitDuplex waits until the primary reports every volume a duplex pair.
func (f *fuzzer) waitDuplex(deadline time.Time) {
	f.t.Helper()
	for {
		st := f.primaryStatus()
		var notDuplex []string
		listed := map[string]bool{}
		for _, vs := range st.Volumes {
			listed[vs.Name] = true
			if vs.State != "duplex" {
				notDuplex = append(notDuplex, strings.TrimSpace(vs.Name+" "+vs.State+" "+vs.Note))
			}
		}
		for _, v := range f.sess.Volumes {
			if !listed[v] {
				notDuplex = append(notDuplex, v+" not a pair")
			}
		}
		if len(notDuplex) == 0 {
			return
		}
		if time.Now().After(deadline) {
			f.fail("stuck: pairs not duplex 60s after writes stopped, the link came back and every pair was resumed: %v", notDuplex)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// quiescePoint is the moment the secondary must pass for the quiesce: the
// latest reading of the primary's clock, or the bound of its stamps since its
// last start if that is later. A primary restarted after kill -9 stamps up to
// its timer's lease ahead of its clock until the clock catches up, so a
// secondary past an earlier moment may still lack writes acknowledged before
// the writes stopped, stamped later than it; and after a step back the stamps
// stay ahead of the clock until it reaches them again.
func (f *fuzzer) quiescePoint() time.Time {
	return latest(f.clockReached(), f.stampBound)
}

// clockReached is the latest reading the primary's clock has had.
func (f *fuzzer) clockReached() time.Time {
	return latest(f.clockPeak, time.Now().Add(f.clockOffset))
}

// stepClock steps the primary's clock to a random offset within 3s of the
// wall clock, forward or back.
func (f *fuzzer) stepClock() {
	f.clockPeak = f.clockReached()
	f.clockOffset = time.Duration(f.rng.IntN(601)-300) * 10 * time.Millisecond
	// The primary reads the step up to 10ms late, under load later: its
	// clock may go on with the offset before it that long.
	f.watch.setClock(stampClock{offset: f.clockOffset, peak: f.clockPeak.Add(time.Second), mark: f.stampBound})
	if err := f.sess.StepClock(f.clockOffset); err != nil {
		f.t.Fatal(err)
	}
	f.logStep(fmt.Sprintf("    the primary's clock now reads %v off the wall clock", f.clockOffset))
	// The writes go on across the step.
	time.Sleep(time.Duration(50+f.rng.IntN(250)) * time.Millisecond)
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// fuzzTimerLease is the lease of the primary's timer (the default of
// timer.OpenPersistent, which the primary takes), with a margin; and
// fuzzTimerSlack how far past its stamps the timer writes its mark when they
// lead its clock by more than the lease (a sixty-fourth of it), with a margin.
const (
	fuzzTimerLease = 2*time.Second + 100*time.Millisecond
	fuzzTimerSlack = 2*time.Second/64 + 10*time.Millisecond
)

// leftDuplex returns the volumes not duplex now, or seen in another state
// since t.
func (f *fuzzer) leftDuplex(t time.Time) []string {
	f.t.Helper()
	st := f.primaryStatus()
	return f.watch.leftSince(t, &st)
}

// compare fails on any block of a secondary export that differs from the
// primary's image.
func (f *fuzzer) compare() {
	f.t.Helper()
	for i, name := range f.sess.Volumes {
		pb, err := os.ReadFile(f.sess.PrimaryPaths()[i])
		if err != nil {
			f.t.Fatal(err)
		}
		c, err := nbd.Dial(f.sess.Config.Secondary.NBD, name)
		if err != nil {
			f.fail("secondary export %s: %v", name, err)
		}
		sb := make([]byte, len(pb))
		err = c.ReadAt(sb, 0)
		c.Close()
		if err != nil {
			f.fail("secondary export %s: %v", name, err)
		}
		var diff []int
		for b := 0; b < len(pb)/workload.BlockSize; b++ {
			o := b * workload.BlockSize
			if string(pb[o:o+workload.BlockSize]) != string(sb[o:o+workload.BlockSize]) {
				diff = append(diff, b)
			}
		}
		if len(diff) > 0 {
			o := diff[0] * workload.BlockSize
			pw, _ := workload.Decode(pb[o : o+workload.BlockSize])
			sw, _ := workload.Decode(sb[o : o+workload.BlockSize])
			f.fail("acknowledged writes lost after quiesce: %s differs from the primary in %d blocks; block %d holds write %d/%d at the primary, %d/%d at the secondary",
				name, len(diff), diff[0], pw.Client, pw.Counter, sw.Client, sw.Counter)
		}
	}
}

func (f *fuzzer) primaryStatus() control.Status {
	f.t.Helper()
	st, err := fetchStatus(f.sess.Config.Primary.Control)
	if err != nil {
		f.fail("primary status: %v", err)
	}
	return st
}

func (f *fuzzer) startSecondary() {
	f.t.Helper()
	d, err := harness.StartSite(f.bin, "secondary", f.sess, filepath.Join(f.sess.Dir, "secondary.log"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.sec = d
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := harness.WaitStatus(ctx, d, f.sess.Config.Secondary.Control, func(control.Status) bool { return true }); err != nil {
		f.fail("secondary did not start: %v", err)
	}
}

func (f *fuzzer) startPrimary() {
	f.t.Helper()
	// The timer's mark is a lease ahead of the latest reading of the clock,
	// or, when the stamps led the clock by more than the lease (it stepped
	// back), a slack past the stamps: past the bound of the run before.
	f.stampBound = latest(f.clockReached().Add(fuzzTimerLease), f.stampBound.Add(fuzzTimerSlack))
	f.watch.setClock(stampClock{offset: f.clockOffset, peak: f.clockPeak, mark: f.stampBound})
	d, err := harness.StartSite(f.bin, "primary", f.sess, filepath.Join(f.sess.Dir, "primary.log"), "--drain-timeout", "10s")
	if err != nil {
		f.t.Fatal(err)
	}
	f.prim = d
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := harness.WaitStatus(ctx, d, f.sess.Config.Primary.Control, func(control.Status) bool { return true }); err != nil {
		f.fail("primary did not start: %v", err)
	}
}

// startLoad starts a workload run with client numbers of its own.
func (f *fuzzer) startLoad() {
	f.t.Helper()
	f.run++
	l := f.layout()
	l.FirstClient = uint32(f.run * fuzzRunClients)
	tg, err := harness.DialTarget(f.sess.Config.Primary.NBD, f.sess.Volumes, fuzzClients)
	if err != nil {
		f.fail("workload: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ld := &fuzzLoad{cancel: cancel, done: make(chan struct{}), target: tg}
	ld.lastAck.Store(time.Now().UnixNano())
	seed := f.rng.Uint64()
	go func() {
		defer close(ld.done)
		ld.acked, ld.err = workload.Run(ctx, l, ld, 0, seed)
	}()
	f.load = ld
}

// WriteAt implements workload.Target, noting when a write was last
// acknowledged, and counting them.
func (l *fuzzLoad) WriteAt(ctx context.Context, vol int, p []byte, off int64) error {
	err := l.target.WriteAt(ctx, vol, p, off)
	if err == nil {
		l.lastAck.Store(time.Now().UnixNano())
		l.writes.Add(1)
	}
	return err
}

// fuzzStall is how long writes may go without an acknowledgement: past
// suspend_after (1s) with the link down, the primary suspends its pairs and
// writes go on.
const fuzzStall = 6 * time.Second

// fuzzSilence is the primary mover's silence time (its default).
const fuzzSilence = 5 * time.Second

// stopLoad ends the workload run. Writes must stop within a bound: a primary
// whose link is down suspends its pairs after suspend_after rather than
// blocking writers for ever. crashed says the primary was killed under it,
// so its write errors are expected.
func (f *fuzzer) stopLoad(crashed bool) {
	f.t.Helper()
	ld := f.load
	f.load = nil
	ld.cancel()
	select {
	case <-ld.done:
	case <-time.After(20 * time.Second):
		ld.abort()
		f.fail("stuck: a write waited more than 20s for its reply (link down: %v, %d writes acknowledged in this run)", f.linkDown, ld.acked)
	}
	ld.target.Close()
	f.acked += ld.acked
	if ld.err != nil && !crashed {
		f.fail("workload: %v", ld.err)
	}
}

type fuzzLoad struct {
	cancel  context.CancelFunc
	done    chan struct{}
	target  *harness.NBDTarget
	acked   int64
	err     error
	once    sync.Once
	lastAck atomic.Int64 // unix nanoseconds
	writes  atomic.Int64 // acknowledged so far
}

func (l *fuzzLoad) abort() {
	l.once.Do(func() {
		l.cancel()
		l.target.Abort()
		<-l.done
		l.target.Close()
	})
}

// pairWatch follows the primary's pair states: a volume's copy at the
// secondary is consistent with the others' from the moment its pair is duplex
// (the primary makes a pair duplex once the secondary holds its copy), until
// it leaves that state.
type pairWatch struct {
	addr   string
	vols   []string
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	state map[string]string
	// since is the last time the volume was seen in another state than
	// duplex (or the watch began): its copy joined the group after it.
	since map[string]time.Time
	// stampedBy is, for the same observation, a bound on the stamps the
	// primary had given by then (see clock): a consistency time is a
	// stamp of the primary's timer, which runs off the wall clock by a
	// clock step and, after a restart, ahead of it by up to its lease.
	stampedBy map[string]time.Time
	// clock is the model of the primary's timer the bounds come from.
	clock stampClock
}

// stampClock bounds the stamps of the primary's timer at a wall-clock time:
// its clock reads offset off the wall clock, has read peak at the latest
// before the last step, and a restarted primary stamps from its timer's mark
// on (mark), up to a lease ahead of its clock.
type stampClock struct {
	offset     time.Duration
	peak, mark time.Time
}

// bound is above every stamp the primary gave up to wall-clock time at.
func (c stampClock) bound(at time.Time) time.Time {
	return latest(latest(c.peak, at.Add(c.offset)), c.mark)
}

func newPairWatch(addr string, vols []string) *pairWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &pairWatch{addr: addr, vols: vols, cancel: cancel, done: make(chan struct{}),
		state: map[string]string{}, since: map[string]time.Time{}, stampedBy: map[string]time.Time{}}
	now := time.Now()
	for _, v := range vols {
		w.since[v], w.stampedBy[v] = now, now
	}
	if addr == "" {
		return w // not watching (tests of the watch feed it statuses)
	}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			fctx, c := context.WithTimeout(ctx, time.Second)
			st, err := fetchRunning(fctx, control.Endpoint{Addr: addr})
			c()
			if err == nil {
				w.observe(st, time.Now())
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *pairWatch) observe(st control.Status, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// A deleted pair is not in the status at all.
	seen := map[string]string{}
	for _, vs := range st.Volumes {
		seen[vs.Name] = vs.State
	}
	for _, v := range w.vols {
		state, ok := seen[v]
		if !ok {
			state = "deleted"
		}
		w.state[v] = state
		if state != "duplex" {
			w.since[v], w.stampedBy[v] = at, w.clock.bound(at)
		}
	}
}

// setClock gives the watch the fuzzer's model of the primary's timer, as a
// clock step or a restart changed it.
func (w *pairWatch) setClock(c stampClock) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clock = c
}

// leftSince returns the volumes in another state than duplex in st (the
// primary's latest status), or seen so since t.
func (w *pairWatch) leftSince(t time.Time, st *control.Status) []string {
	w.observe(*st, time.Now())
	w.mu.Lock()
	defer w.mu.Unlock()
	var left []string
	for _, v := range w.vols {
		if w.state[v] != "duplex" || !w.since[v].Before(t) {
			left = append(left, v+" "+w.state[v])
		}
	}
	return left
}

func (w *pairWatch) stop() {
	w.cancel()
	<-w.done
}

// group returns the volumes whose copy at the secondary is in the consistency
// group at consistency time ct: duplex since before the primary stamped ct,
// and duplex in the primary's statuses taken around the read (when given).
//
// Before ct on the primary's timer, not on the wall clock: ct is a stamp,
// which a clock step sets up to 3s off the wall clock, and a restarted
// primary up to its lease ahead of it. A pair seen suspended, say, at a wall
// time before ct, but after the primary stamped ct, has left the group since:
// a restart suspends every pair whose activity log's regions do not fit the
// sidefile, and resumes them by itself once the link is up, while the
// resync it found unfinished goes on at once; its end, journaled before
// their resync begins, lets the secondary apply, under the readers of its
// exports, the writes held since ct to the resynced volume, but not those
// of the suspended ones, which the primary only marked in their bitmaps:
// their copies stay as of ct, and the suspended pairs' resync ends later.
// Both statuses of the secondary, before and after the read, can show every
// volume at one time, the first before those groups are applied, the
// second after the suspended pairs' resync ends.
func (w *pairWatch) group(ct time.Time, before, after *control.Status) map[int]bool {
	for _, st := range []*control.Status{before, after} {
		if st != nil {
			w.observe(*st, time.Now())
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	g := map[int]bool{}
	for i, v := range w.vols {
		if w.state[v] == "duplex" && w.stampedBy[v].Before(ct) {
			g[i] = true
		}
	}
	return g
}

// fetchURL returns the body of a GET of url.
func fetchURL(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}
