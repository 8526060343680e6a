package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"duplex/apply"
	"duplex/bench/harness"
	"duplex/control"
	"duplex/secondary"
	"duplex/site"
	"duplex/workload"
)

// Fault kinds, in the order a campaign runs them: faults of the link and the
// processes, then the operation faults.
var kinds = append([]string{"primary-kill", "secondary-kill", "link-cut", "latency", "corrupt"}, operationKinds...)

// canRun says why a kind cannot run here, or nil.
func canRun(kind string) error {
	switch kind {
	case "disk-full", "resync-disk-full":
		if os.Geteuid() != 0 {
			return errors.New("it mounts a tmpfs under the journal, which needs root")
		}
	case "resync-disk-error":
		return harness.CanFailDisk()
	}
	return nil
}

// operationKinds are the kinds of operations.go.
var operationKinds = []string{"suspend-resume", "auto-suspend", "disk-full", "resync-crash", "resync-disk-full", "resync-disk-error"}

// Layout of every trial: 2 subsystems × 2 volumes, so that consistency spans
// subsystems; each volume holds two regions of regionBlocks 4 KiB blocks.
// Every workload run ("epoch") writes a region of its own with client numbers
// of its own, and is checked on its own: after a kill -9 of the primary the
// secondary may legitimately lack writes of the epoch before the crash (the
// primary does not recover its sidefile yet), and a later epoch overwriting
// the blocks of an earlier one would make the checker see a dependency
// replaced by another client's write.
const (
	subsystems   = 2
	volsPerSS    = 2
	regionBlocks = 256
	regionBytes  = regionBlocks * workload.BlockSize
	clients      = 4
)

// settings of a campaign.
type settings struct {
	bin     string        // duplex binary
	dir     string        // trials run in subdirectories
	warm    time.Duration // workload before the fault
	drain   time.Duration // primary's --drain-timeout at the end of a trial
	catchUp time.Duration // how long the secondary may take to catch up after a fault
	// startRate, if not 0, is the link's bandwidth while a trial's session
	// starts (tests slow the first copies with it).
	startRate int64
	logf      func(format string, args ...any)
}

// result of one trial.
type result struct {
	kind string
	n    int
	// violations: blocks of a secondary image that break the dependent-write
	// rule (or do not decode), at every point the image was checked.
	violations int
	// lost: journaled groups the secondary came back without, plus blocks
	// of a cleanly drained primary that the secondary does not hold.
	lost int
	// stalled: the secondary did not catch up after the fault ended, or the
	// primary could not ship what it held before its drain timeout; the loss
	// check could then not be made.
	stalled bool
	// statusRegress: the consistency time the secondary's status reported
	// before a kill is later than the one it came back with, although no
	// journaled group was lost (the status runs ahead of the journal).
	statusRegress bool
	// missed: a resync-crash trial whose kill (a resync-disk-full trial whose
	// full disk) came when the secondary held no resync (before its markers
	// were journaled or after it ended).
	missed  bool
	catchUp time.Duration // from the end of the fault to the secondary passing it
	notes   []string
	err     error // the trial could not be run
}

func (r *result) notef(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// trial is one running trial.
type trial struct {
	s     settings
	r     *result
	rng   *rand.Rand
	sess  *harness.Session
	proxy *harness.Proxy
	prim  *harness.Daemon
	sec   *harness.Daemon
	// epochs run so far: their layouts and region bases.
	epochs []epoch
	// cleanEpochs are the epochs whose every write went through a primary
	// that then drained cleanly: they must be byte-identical on both sites.
	cleanEpochs []int
	// journalFS is the file system of the secondary's journal alone, for
	// disk-full and resync-disk-full.
	journalFS string
	// held says the secondary held a resync when a site was killed or its
	// disk filled.
	held bool
	// released are the volumes the last duplex recover reported not
	// consistent because the secondary gave up holding their resync.
	released map[string]bool
	// failing is the disk of the secondary's first volume in
	// resync-disk-error.
	failing *harness.FailingDisk
	// unmount removes the journal's file system of disk-full.
	unmount func() error
}

type epoch struct {
	layout workload.Layout
	base   int64
}

func runTrial(ctx context.Context, s settings, kind string, n int, seed uint64) (res result) {
	res = result{kind: kind, n: n}
	// One stream per (seed, kind, trial): a seed repeats a campaign's fault
	// timings, and kinds do not share theirs.
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", kind, n)
	t := &trial{s: s, r: &res, rng: rand.New(rand.NewPCG(seed, h.Sum64()))}
	defer t.cleanup()
	if err := t.run(ctx, kind); err != nil {
		res.err = err
	}
	return res
}

func (t *trial) cleanup() {
	for _, d := range []*harness.Daemon{t.prim, t.sec} {
		if d != nil {
			d.Kill()
		}
	}
	if t.proxy != nil {
		t.proxy.Close()
	}
	if t.unmount != nil {
		t.unmount()
	}
	if t.failing != nil {
		t.failing.Close()
	}
}

// begin sets a trial's session up and starts its first epoch's workload:
// the fault comes next.
func (t *trial) begin(ctx context.Context, kind string) (*load, error) {
	dir := filepath.Join(t.s.dir, fmt.Sprintf("%s-%d", kind, t.r.n))
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	spec := harness.Spec{Session: "faults", Subsystems: subsystems, VolumesPerSubsystem: volsPerSS,
		VolumeSize: 2 * regionBytes, SidefileLimit: 16 << 20, Proxy: true, Token: true}
	switch kind {
	case "resync-crash":
		// Copies wait for room in a sidefile this small, so the share of
		// the resync copied follows what the slowed link carried.
		spec.SidefileLimit = 1 << 20
	case "auto-suspend", "disk-full":
		// The sidefile fills within a second or two of the workload, and
		// the session suspends a second after.
		spec.SidefileLimit, spec.SuspendAfter = 2<<20, time.Second
	case "resync-disk-full", "resync-disk-error":
		// As resync-crash; and with the secondary stopped on its disk the
		// session suspends a second after the sidefile fills.
		spec.SidefileLimit, spec.SuspendAfter = 1<<20, time.Second
	}
	if kind == "resync-disk-error" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		d, err := harness.NewFailingDisk(dir, 2*regionBytes)
		if err != nil {
			return nil, err
		}
		t.failing = d
		spec.SecondaryVolumePaths = map[string]string{"v001": d.Dev}
	}
	if kind == "disk-full" || kind == "resync-disk-full" {
		fs := filepath.Join(dir, "journalfs")
		unmount, err := harness.MountTmpfs(fs, 192<<20)
		if err != nil {
			return nil, err
		}
		t.unmount = unmount
		t.journalFS = fs
		spec.Journal = filepath.Join(fs, "journal")
	}
	var err error
	t.sess, err = harness.NewSession(dir, spec)
	if err != nil {
		return nil, err
	}
	if err := t.startSecondary(); err != nil {
		return nil, err
	}
	if t.proxy, err = harness.NewProxy(t.sess.LinkAddr, t.sess.Config.Secondary.Listen); err != nil {
		return nil, err
	}
	t.proxy.SetRate(t.s.startRate)
	if err := t.startPrimary(); err != nil {
		return nil, err
	}
	// A volume in its very first copy has no consistent state: the
	// secondary says so and holds no other volume for it, so a kill then
	// recovers it mixing copied and uncopied regions, which the checks
	// would count against a promise never made. Faults come once every
	// pair is duplex.
	cctx, cancel := context.WithTimeout(ctx, t.s.catchUp)
	st, err := harness.WaitStatus(cctx, t.prim, t.sess.Config.Primary.Control, allDuplex(len(t.sess.Volumes)))
	cancel()
	if err != nil {
		var states []string
		for _, v := range st.Volumes {
			states = append(states, v.Name+" "+v.State)
		}
		return nil, fmt.Errorf("the first copies did not complete: %w (%v)", err, states)
	}
	t.proxy.SetRate(0)
	return t.startEpoch()
}

func (t *trial) run(ctx context.Context, kind string) error {
	ld, err := t.begin(ctx, kind)
	if err != nil {
		return err
	}
	sleepCtx(ctx, t.s.warm)
	var faultEnd time.Time
	switch kind {
	case "primary-kill":
		faultEnd, err = t.primaryKill(ctx, ld)
	case "secondary-kill":
		faultEnd, err = t.secondaryKill(ctx, true)
	case "link-cut":
		d := time.Second + time.Duration(t.rng.Int64N(int64(2*time.Second)))
		t.r.notef("cut %s", d.Round(time.Millisecond))
		t.proxy.Cut()
		sleepCtx(ctx, d)
		t.proxy.Restore()
		faultEnd = time.Now()
	case "latency":
		d := 50*time.Millisecond + time.Duration(t.rng.Int64N(int64(150*time.Millisecond)))
		t.r.notef("latency %s for 2s", d.Round(time.Millisecond))
		t.proxy.SetLatency(d)
		sleepCtx(ctx, 2*time.Second)
		t.proxy.SetLatency(0)
		faultEnd = time.Now()
	case "corrupt":
		faultEnd = t.corrupt(ctx)
	case "suspend-resume":
		faultEnd, err = t.suspendResume(ctx)
	case "auto-suspend":
		faultEnd, err = t.autoSuspend(ctx)
	case "disk-full":
		faultEnd, err = t.diskFull(ctx)
	case "resync-crash":
		faultEnd, err = t.resyncCrash(ctx, ld)
	case "resync-disk-full":
		faultEnd, err = t.resyncDiskFull(ctx)
	case "resync-disk-error":
		faultEnd, err = t.resyncDiskError(ctx)
	default:
		return fmt.Errorf("unknown fault kind %q", kind)
	}
	if err != nil {
		return err
	}
	if kind != "primary-kill" && !(kind == "resync-crash" && t.r.n%2 == 0) {
		t.cleanEpochs = append(t.cleanEpochs, 0)
	}
	// The secondary must catch up past the moment the fault ended, while
	// writes go on; then they go on a little longer.
	if err := t.awaitCatchUp(ctx, faultEnd); err != nil {
		t.r.stalled = true
		t.r.notef("no catch-up: %v", err)
	}
	sleepCtx(ctx, 500*time.Millisecond)
	if _, err := ld.stop(); err != nil && kind != "primary-kill" && kind != "resync-crash" {
		if !t.r.stalled {
			return fmt.Errorf("workload: %w", err)
		}
		t.r.notef("workload: %v", err)
	}
	if slices.Contains(operationKinds, kind) {
		// A pair still copying at the drain is not in step: the comparison
		// at the end would count what it has left to copy as lost.
		t.awaitDuplex(ctx)
	}
	return t.finish(ctx)
}

// primaryKill kills the primary in the middle of the workload, restarts it
// and runs a second epoch through the new process.
func (t *trial) primaryKill(ctx context.Context, ld *load) (time.Time, error) {
	before, _ := t.secStatus(ctx)
	jg, _, _, err := journaled(t.sess.Config.Secondary.Journal)
	if err != nil {
		return time.Time{}, err
	}
	t.prim.Kill()
	ld.stop() // its writes fail now; that is the point
	down := 200*time.Millisecond + time.Duration(t.rng.Int64N(int64(500*time.Millisecond)))
	t.r.notef("primary down %s", down.Round(time.Millisecond))
	sleepCtx(ctx, down)
	if err := t.startPrimary(); err != nil {
		return time.Time{}, err
	}
	faultEnd := time.Now()
	ld2, err := t.startEpoch()
	if err != nil {
		return time.Time{}, err
	}
	if err := t.awaitCatchUp(ctx, faultEnd); err != nil {
		t.r.stalled = true
		t.r.notef("no catch-up after primary restart: %v", err)
	}
	sleepCtx(ctx, time.Second)
	if _, err := ld2.stop(); err != nil {
		return time.Time{}, fmt.Errorf("workload after primary restart: %w", err)
	}
	t.cleanEpochs = append(t.cleanEpochs, len(t.epochs)-1)
	after, err := t.secStatus(ctx)
	if err != nil {
		return time.Time{}, err
	}
	t.compareStatus(before, after.ConsistencyTime)
	// The secondary never stopped: what it had journaled it still holds.
	st, err := apply.ReadState(site.StatePath(t.sess.Config))
	if err != nil {
		return time.Time{}, err
	}
	if st.Group < jg && !t.r.stalled {
		t.r.lost++
		t.r.notef("journal held group %d before the primary was killed; the secondary has applied only through %d", jg, st.Group)
	}
	return faultEnd, nil
}

// secondaryKill kills the secondary while it applies groups, recovers its
// volumes offline as an operator would after losing the site, checks them,
// and restarts it; the primary keeps taking writes throughout. With
// awaitApply it first waits for a group to be applied, so that the kill lands
// while groups flow; a resync's groups are held, not applied, so a kill meant
// for the middle of one does not wait.
func (t *trial) secondaryKill(ctx context.Context, awaitApply bool) (time.Time, error) {
	first, err := t.secStatus(ctx)
	if err != nil {
		return time.Time{}, err
	}
	before := first
	for deadline := time.Now().Add(5 * time.Second); awaitApply && time.Now().Before(deadline); {
		st, err := t.secStatus(ctx)
		if err == nil && st.GroupsApplied != nil && first.GroupsApplied != nil && *st.GroupsApplied > *first.GroupsApplied {
			before = st
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if awaitApply {
		time.Sleep(time.Duration(t.rng.Int64N(int64(20 * time.Millisecond))))
	}
	// Frozen, the secondary's journal on disk is what the kill leaves.
	if err := t.sec.Freeze(); err != nil {
		return time.Time{}, err
	}
	jg, jt, last, tail, err := t.recoversTo()
	t.sec.Kill()
	if err != nil {
		return time.Time{}, err
	}
	t.held = last != jg
	group, ct, err := t.recover(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var at string
	if last != jg {
		at = fmt.Sprintf(" (groups %d-%d after it held by a resync)", jg+1, last)
	}
	if tail != "" {
		// An Append the kill interrupted: never synced, so never
		// acknowledged, and dropped by the journal's recovery.
		at += fmt.Sprintf(" (then a torn tail: %s)", tail)
	}
	t.r.notef("killed at journal group %d%s, recovered group %d", jg, at, group)
	if group < jg || ct < jt {
		t.r.lost++
		t.r.notef("LOST: the journal held group %d (time %d) at the kill; recover came back at group %d (time %d)", jg, jt, group, ct)
	}
	t.compareStatus(before, control.FormatTime(ct))
	// The recovered image must be consistent now, not only at the end.
	if err := t.checkSecondary("after kill -9 and recover"); err != nil {
		return time.Time{}, err
	}
	down := 300*time.Millisecond + time.Duration(t.rng.Int64N(int64(700*time.Millisecond)))
	sleepCtx(ctx, down)
	if err := t.startSecondary(); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}

// recoversTo reads the frozen secondary's state file and journal and returns
// the group a restart or recover must come back at: the last intact journaled
// group after which no resync holds the volumes (while one is open, the
// secondary keeps them at the last group before it), with its consistency
// time; and the last intact journaled group, and the journal's torn tail if
// any.
func (t *trial) recoversTo() (group uint64, ct int64, last uint64, tail string, err error) {
	st, err := apply.ReadState(site.StatePath(t.sess.Config))
	if err != nil {
		return 0, 0, 0, "", err
	}
	gs, tail, err := journaledGroups(t.sess.Config.Secondary.Journal, st.Group, false)
	if err != nil {
		return 0, 0, 0, "", err
	}
	group, ct = secondary.RecoversTo(st, gs)
	last = group
	if n := len(gs); n > 0 {
		last = gs[n-1].Number
	}
	return group, ct, last, tail, nil
}

// corrupt flips a bit anywhere in the stream to the secondary twice (almost
// always inside a frame, which its CRC catches), then once more where the
// framing is at stake, in a frame's length prefix, so that the receiver loses
// the frame boundaries: in odd trials of a record set going to the
// secondary, in even trials of an acknowledgement going back to the primary.
func (t *trial) corrupt(ctx context.Context) time.Time {
	for range 2 {
		sleepCtx(ctx, 300*time.Millisecond)
		t.proxy.Corrupt(harness.ToSecondary, 1)
	}
	sleepCtx(ctx, 300*time.Millisecond)
	dir, name := harness.ToSecondary, "a record-set"
	if t.r.n%2 == 0 {
		dir, name = harness.ToPrimary, "an acknowledgement"
	}
	t.proxy.CorruptLength(dir)
	// Let the last flip reach a frame before calling the fault over.
	for deadline := time.Now().Add(2 * time.Second); t.proxy.FlippedLengths.Load() == 0 && time.Now().Before(deadline); {
		sleepCtx(ctx, 10*time.Millisecond)
	}
	t.r.notef("%d bits flipped, %d of them in the length prefix of %s frame", t.proxy.Flipped.Load(), t.proxy.FlippedLengths.Load(), name)
	return time.Now()
}

// compareStatus records a status regression: the consistency time reported
// before a kill is after the one the secondary has now.
func (t *trial) compareStatus(before control.Status, now string) {
	b, err1 := time.Parse(time.RFC3339Nano, before.ConsistencyTime)
	a, err2 := time.Parse(time.RFC3339Nano, now)
	if err1 != nil || err2 != nil {
		return
	}
	if a.Before(b) {
		t.r.statusRegress = true
		t.r.notef("status said consistent as of %s before the kill, %s after (%s earlier)",
			before.ConsistencyTime, now, b.Sub(a))
	}
}

// awaitCatchUp waits until the secondary's consistency time passes since.
func (t *trial) awaitCatchUp(ctx context.Context, since time.Time) error {
	cctx, cancel := context.WithTimeout(ctx, t.s.catchUp)
	defer cancel()
	_, err := harness.WaitStatus(cctx, t.sec, t.sess.Config.Secondary.Control, func(st control.Status) bool {
		ct, err := time.Parse(time.RFC3339Nano, st.ConsistencyTime)
		return err == nil && ct.After(since)
	})
	if err == nil {
		t.r.catchUp = max(t.r.catchUp, time.Since(since))
	}
	return err
}

// finish drains the primary, stops the secondary, recovers its volumes and
// checks them: the invariant on every epoch, and byte equality on the epochs
// the primary shipped completely.
func (t *trial) finish(ctx context.Context) error {
	code := t.prim.Stop(t.s.drain + 10*time.Second)
	if code != 0 {
		t.r.stalled = true
		t.r.notef("primary exited with %d at the end (drain failed): %s", code, lastLine(t.prim.LogTail(600)))
	}
	if code := t.sec.Stop(30 * time.Second); code != 0 {
		t.r.notef("secondary exited with %d at the end", code)
	}
	if _, _, err := t.recover(ctx); err != nil {
		return err
	}
	if err := t.checkSecondary("at the end"); err != nil {
		return err
	}
	if t.r.stalled {
		return nil // the primary still held updates: a comparison means nothing
	}
	for _, e := range t.cleanEpochs {
		base := t.epochs[e].base
		for i, p := range t.sess.PrimaryPaths() {
			s := t.sess.SecondaryPaths()[i]
			n, err := harness.DiffBlocks(p, s, base, regionBytes, workload.BlockSize)
			if err != nil {
				return err
			}
			if n > 0 {
				t.r.lost += n
				t.r.notef("LOST: %d blocks of %s (epoch %d) differ between the drained primary and the secondary", n, t.sess.Volumes[i], e)
			}
		}
	}
	return nil
}

// checkSecondary runs the dependent-write check on every epoch's region of
// the secondary images (the secondary must not be running).
func (t *trial) checkSecondary(when string) error {
	im, err := harness.OpenImages(t.sess.SecondaryPaths())
	if err != nil {
		return err
	}
	defer im.Close()
	for i, e := range t.epochs {
		img, bad, err := workload.ReadImage(e.layout, im.Reader(e.base))
		if err != nil {
			return err
		}
		// A region without a single write means the check looks in the
		// wrong place (or nothing was replicated): it would pass vacuously.
		if written, _ := img.Stats(); written == 0 {
			return fmt.Errorf("%s: the secondary holds no write of epoch %d", when, i)
		}
		// A hold the secondary gave up on a nearly full journal leaves the
		// resyncing volumes a mix, as documented (recover says so): the
		// check leaves them out until a copy of them ends.
		outside := func(v int) bool { return t.released[t.sess.Volumes[v]] }
		bad = slices.DeleteFunc(bad, func(v workload.Violation) bool { return outside(int(v.Holder.Volume)) })
		bad = append(bad, img.Violations(img, workload.Scope{Outside: outside})...)
		if len(bad) > 0 {
			t.r.violations += len(bad)
			t.r.notef("VIOLATION %s, epoch %d: %d blocks, first: %s", when, i, len(bad), bad[0])
		}
	}
	return nil
}

var recoverRE = regexp.MustCompile(`consistent as of (\S+) \(group (\d+)\)`)

// recover runs `duplex recover` on the stopped secondary and returns the group
// and consistency time it reports.
func (t *trial) recover(ctx context.Context) (uint64, int64, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, t.s.bin, "recover", "--config", t.sess.ConfigPath).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("duplex recover: %v\n%s", err, out)
	}
	t.released = map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		// A volume line that does not say consistent: its copy is not a
		// state the primary had (a first copy in progress).
		if strings.HasPrefix(line, "  ") && !strings.Contains(line, "consistent as of") {
			t.r.notef("duplex recover: %s", strings.TrimSpace(line))
			if name, _, ok := strings.Cut(strings.TrimSpace(line), " "); ok && strings.Contains(line, "gave up holding its resync") {
				t.released[name] = true
			}
		}
	}
	m := recoverRE.FindSubmatch(out)
	if m == nil {
		return 0, 0, nil // nothing ever applied
	}
	ts, err := time.Parse(time.RFC3339Nano, string(m[1]))
	if err != nil {
		return 0, 0, fmt.Errorf("duplex recover: %w", err)
	}
	g, _ := strconv.ParseUint(string(m[2]), 10, 64)
	return g, ts.UnixNano(), nil
}

func (t *trial) startSecondary() error {
	d, err := harness.StartSite(t.s.bin, "secondary", t.sess, filepath.Join(t.sess.Dir, "secondary.log"))
	if err != nil {
		return err
	}
	t.sec = d
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = harness.WaitStatus(ctx, d, t.sess.Config.Secondary.Control, func(control.Status) bool { return true })
	return err
}

func (t *trial) startPrimary() error {
	d, err := harness.StartSite(t.s.bin, "primary", t.sess, filepath.Join(t.sess.Dir, "primary.log"),
		"--drain-timeout", t.s.drain.String())
	if err != nil {
		return err
	}
	t.prim = d
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = harness.WaitStatus(ctx, d, t.sess.Config.Primary.Control, harness.Connected)
	return err
}

func (t *trial) secStatus(ctx context.Context) (control.Status, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return harness.FetchRunning(cctx, control.Endpoint{Addr: t.sess.Config.Secondary.Control})
}

// startEpoch starts a workload run in a region and with client numbers of its
// own: distinct per trial and per epoch.
func (t *trial) startEpoch() (*load, error) {
	e := len(t.epochs)
	if e >= 2 {
		return nil, errors.New("a trial has room for two epochs")
	}
	l := workload.Layout{Volumes: subsystems * volsPerSS, BlocksPerVolume: regionBlocks, Clients: clients,
		FirstClient: uint32(t.r.n*1000 + e*100)}
	ep := epoch{layout: l, base: int64(e) * regionBytes}
	ld, err := startLoad(t.sess.Config.Primary.NBD, t.sess.Volumes, ep, t.rng.Uint64())
	if err != nil {
		return nil, err
	}
	t.epochs = append(t.epochs, ep)
	return ld, nil
}

// load is a workload running in the background.
type load struct {
	cancel context.CancelFunc
	done   chan struct{}
	target *harness.NBDTarget
	acked  int64
	err    error
}

func startLoad(addr string, names []string, e epoch, seed uint64) (*load, error) {
	tg, err := harness.DialTarget(addr, names, clients)
	if err != nil {
		return nil, err
	}
	tg.Base = e.base
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, done: make(chan struct{}), target: tg}
	go func() {
		defer close(l.done)
		l.acked, l.err = workload.Run(ctx, e.layout, tg, 0, seed)
	}()
	return l, nil
}

// stop ends the workload and returns how many writes were acknowledged. A
// client waits for its write's reply before it sees the cancellation, so if
// replies stop coming (the primary blocks writers while its sidefile is
// full) the sockets are closed under them.
func (l *load) stop() (int64, error) {
	l.cancel()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-l.done:
	case <-t.C:
		l.target.Abort()
		<-l.done
		l.err = fmt.Errorf("writes blocked for 10s after the workload was stopped (%d acknowledged); connections aborted", l.acked)
	}
	l.target.Close()
	return l.acked, l.err
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func lastLine(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}
