package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"duplex/bench/harness"
	"duplex/config"
	"duplex/control"
	"duplex/internal/testenv"
	"duplex/nbd"
	"duplex/workload"
)

// TestDaemonsRolesInRandomOrder runs the session's operations in a seeded
// random order through the daemons, the roles of the two sites included: a
// dependent-write workload at whichever site is the primary, and steps
// picked at random among pair suspend and resume of every pair, kill -9 of
// the primary site or of the secondary site (each run again as an operator
// would: duplex primary, duplex promote, duplex secondary, duplex rejoin
// --yes), a planned switchover (duplex switchover, then duplex rejoin --yes
// at the site handed over from), at times with a kill -9 of either site in
// the middle of the rejoin's copy, a failover either way (the primary
// killed -9 for good: duplex recover and duplex promote at B, or duplex
// promote at A, the old primary rejoined to B, which fails over back;
// duplex rejoin --yes at the lost site), and faults of the link the
// primary dials, whichever way it runs: cut for up to 3 s, or a bit
// flipped in a frame or a length prefix, either way. So the session
// switches and fails over and back between kills, suspensions, resyncs and
// link faults.
//
// Each site has a directory and a config of its own, as two machines
// would: its files are where no command run at the other site looks. The
// configs differ in where the link is dialed: A dials B through one
// in-process proxy, B dials A (once A rejoined it) through another.
//
// After every step:
//
//   - the dependent-write invariant at the secondary site, read through its
//     read-only exports (holders first, their dependencies in a second read,
//     as the copy only moves forward), or, after its kill -9 where duplex
//     recover applies, on its images recovered offline; at a promoted site
//     before it takes writes;
//   - nothing journaled lost by a kill -9 of the secondary: recover comes
//     back at the group its status reported before the kill, or later;
//   - never stuck: every pair duplex again within minutes of each step, the
//     workload's writes stopping when asked;
//   - at a switchover, nothing acknowledged lost: once the writes are held
//     and the workload stopped, both sites hold the same bytes.
//
// At the end the writes stop, the secondary passes that moment, both sites
// stop, and their images are byte-identical and pass the check.
//
// DUPLEX_ROLES_SEED=N replays a run's sequence of steps (not the timing of
// the processes); DUPLEX_ROLES_STEPS=N changes the number of steps.
func TestDaemonsRolesInRandomOrder(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs both sites as processes through many steps; skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DUPLEX_ROLES_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DUPLEX_ROLES_SEED=%q: %v", s, err)
		}
		seed = v
	}
	steps := 14
	if s := os.Getenv("DUPLEX_ROLES_STEPS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("DUPLEX_ROLES_STEPS=%q: %v", s, err)
		}
		steps = v
	}
	t.Logf("seed %d (DUPLEX_ROLES_SEED=%d go test -run TestDaemonsRolesInRandomOrder ./e2e/ replays its steps)", seed, seed)
	r := newRolesRun(t, seed)
	defer r.close()
	for i := range steps {
		r.step = i + 1
		r.randomStep()
	}
	r.step++
	r.logStep("end")
	r.finish()
	t.Logf("seed %d: %d steps (%s), %d checks, %d switchovers, %d writes acknowledged",
		seed, steps, r.counts(), r.checks, r.switchovers, r.acked)
}

const (
	rolesA, rolesB = 0, 1
	rolesBlocks    = 128 // per volume: the workload's region, 512 KiB
	rolesClients   = 4
	// Client numbers of workload run n are n*rolesRunClients+...
	rolesRunClients = 100
	// rolesWait bounds every wait for the session to settle after a step:
	// long enough for a machine loaded well past its cores.
	rolesWait = 3 * time.Minute
	// rolesFlipWait bounds the wait for an armed flip to reach the
	// stream: the workload keeps it busy both ways, but a flip armed in a
	// length prefix is lost with a connection closed before its next
	// frame.
	rolesFlipWait = 30 * time.Second
)

var rolesSiteName = [2]string{"A", "B"}

type rolesRun struct {
	t     *testing.T
	seed  uint64
	rng   *rand.Rand
	s     *procSession
	names []string
	cfg   [2]string // each site's config file, in a directory of its own
	// proxy is each site's way to the other, as the primary: A's to B's
	// [secondary] listen, B's to A's [primary] listen.
	proxy [2]*harness.Proxy
	ctl   [2]string   // each site's control address
	nbd   [2]string   // each site's NBD address
	paths [2][]string // each site's volume images
	prim  int         // the primary site
	d     [2]*daemon
	// again is how each site is run again after a kill -9.
	again [2]string
	load  *rolesLoad
	run   int

	step        int
	history     []string
	ops         map[string]int
	checks      int
	switchovers int
	acked       int64
}

type rolesLoad struct {
	target *nbdTarget
	cancel context.CancelFunc
	done   chan error
}

func newRolesRun(t *testing.T, seed uint64) *rolesRun {
	// A listens at listenA as B's secondary; each site dials the other
	// through a proxy: A at viaB, B at viaA.
	listenA, viaA, viaB := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	s := newSession(t, sessionOpts{name: "e2e-roles", volSize: 4 * config.MiB, token: "e2e-roles-token", edit: func(c *config.Config) {
		c.Primary.Listen, c.Primary.Journal = listenA, filepath.Join(c.Dir, "primary", "journal")
		c.Primary.SidefileLimit = 8 * config.MiB
		c.Primary.Secondary = viaB
	}})
	r := &rolesRun{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x726f6c6573)), s: s, names: s.cfg.VolumeNames(), ops: map[string]int{},
		ctl: [2]string{s.cfg.Primary.Control, s.cfg.Secondary.Control}, nbd: [2]string{s.cfg.Primary.NBD, s.cfg.Secondary.NBD},
		again: [2]string{"primary", "secondary"}}
	// B's config is A's with B's own directory for every file, and B
	// dialing A through its proxy.
	dirB := t.TempDir()
	cb := *s.cfg
	cb.Primary.Listen = viaA
	text, err := cb.Encode()
	if err != nil {
		t.Fatal(err)
	}
	text = []byte(strings.ReplaceAll(string(text), s.dir+string(filepath.Separator), dirB+string(filepath.Separator)))
	if err := os.WriteFile(filepath.Join(dirB, "duplex.toml"), text, 0o644); err != nil {
		t.Fatal(err)
	}
	cfgB, err := config.Load(filepath.Join(dirB, "duplex.toml"))
	if err != nil {
		t.Fatalf("B's config does not load: %v\n%s", err, text)
	}
	if tok := cfgB.TokenPath(); tok != "" {
		b, err := os.ReadFile(s.cfg.TokenPath())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tok, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r.cfg = [2]string{s.path, filepath.Join(dirB, "duplex.toml")}
	for site, at := range [2]struct{ listen, target string }{{viaB, s.cfg.Secondary.Listen}, {viaA, listenA}} {
		p, err := harness.NewProxy(at.listen, at.target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		r.proxy[site] = p
	}
	for _, n := range r.names {
		pv, _, _ := s.cfg.PrimaryVolume(n)
		sv, _ := cfgB.SecondaryVolume(n)
		if !strings.HasPrefix(sv.Path, dirB) {
			t.Fatalf("B's copy of %s at %s, outside B's directory %s", n, sv.Path, dirB)
		}
		r.paths[rolesA], r.paths[rolesB] = append(r.paths[rolesA], pv.Path), append(r.paths[rolesB], sv.Path)
	}
	r.start(rolesB, "secondary")
	r.start(rolesA, "primary")
	r.waitDuplex("the first copies")
	r.startLoad()
	return r
}

func (r *rolesRun) sec() int { return 1 - r.prim }

func (r *rolesRun) close() {
	if r.load != nil {
		r.load.cancel()
		r.load.target.close()
	}
	if r.t.Failed() {
		for i, d := range r.d {
			if d != nil {
				r.t.Logf("log of %s (%s):\n%s", rolesSiteName[i], d.logPath, logTail(d.log(), 6000))
			}
		}
	}
}

func (r *rolesRun) fail(format string, args ...any) {
	r.t.Helper()
	from := max(0, len(r.history)-30)
	r.t.Fatalf("seed %d, step %d: %s\nsteps:\n  %s\nreplay: DUPLEX_ROLES_SEED=%d go test -run TestDaemonsRolesInRandomOrder ./e2e/",
		r.seed, r.step, fmt.Sprintf(format, args...), strings.Join(r.history[from:], "\n  "), r.seed)
}

func (r *rolesRun) logStep(s string) {
	line := fmt.Sprintf("%3d %s %s", r.step, time.Now().Format("15:04:05.000"), s)
	r.history = append(r.history, line)
	if testing.Verbose() {
		r.t.Log(line)
	}
}

func (r *rolesRun) counts() string {
	var parts []string
	for k, v := range r.ops {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	return strings.Join(parts, ", ")
}

// start runs site as `duplex ROLE` (rejoin with --yes) and waits until it
// answers on its control address.
func (r *rolesRun) start(site int, role string) {
	r.t.Helper()
	var flags []string
	if role == "rejoin" {
		flags = []string{"--yes"}
	}
	d := startDaemon(r.t, role, r.cfg[site], filepath.Join(r.s.dir, fmt.Sprintf("site-%s.log", rolesSiteName[site])), flags...)
	if role == "promote" && site == rolesA {
		// A promoted fails over back: it starts as the session's primary.
		d.role = "primary"
	}
	d.waitStarted()
	d.waitReady(r.ctl[site])
	r.d[site] = d
	r.again[site] = role
}

func (r *rolesRun) status(site int) (control.Status, error) {
	return fetchStatus(r.ctl[site])
}

// waitDuplex waits until the primary site is linked and every pair there is
// duplex.
func (r *rolesRun) waitDuplex(after string) {
	r.t.Helper()
	var last string
	for deadline := time.Now().Add(rolesWait); ; {
		st, err := r.status(r.prim)
		if err == nil && st.Link == "connected" && len(st.Volumes) == len(r.names) {
			var not []string
			for _, v := range st.Volumes {
				if v.State != "duplex" {
					not = append(not, strings.TrimSpace(v.Name+" "+v.State+" "+v.Note))
				}
			}
			if len(not) == 0 {
				return
			}
			last = fmt.Sprintf("not duplex: %v", not)
		} else if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("link %s, %d pairs", st.Link, len(st.Volumes))
		}
		for i, d := range r.d {
			if d != nil && d.exited() {
				r.fail("site %s (duplex %s) exited with %d after %s:\n%s", rolesSiteName[i], d.role, d.code, after, logTail(d.log(), 3000))
			}
		}
		if time.Now().After(deadline) {
			r.fail("stuck: site %s, the primary, not linked with every pair duplex %s after %s: %s", rolesSiteName[r.prim], rolesWait, after, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *rolesRun) layout() workload.Layout {
	return workload.Layout{Volumes: len(r.names), BlocksPerVolume: rolesBlocks, Clients: rolesClients}
}

// startLoad starts a workload run at the primary site, with client numbers
// of its own.
func (r *rolesRun) startLoad() {
	r.t.Helper()
	r.run++
	l := r.layout()
	l.FirstClient = uint32(r.run * rolesRunClients)
	tg := dialTarget(r.t, r.nbd[r.prim], r.names, l, 0)
	ctx, cancel := context.WithCancel(context.Background())
	ld := &rolesLoad{target: tg, cancel: cancel, done: make(chan error, 1)}
	seed := r.rng.Uint64()
	go func() {
		_, err := workload.Run(ctx, l, tg, 0, seed)
		ld.done <- err
	}()
	r.load = ld
	// The next step then meets a workload that writes, however slowly a
	// loaded machine started it.
	tg.waitAcked(r.t)
}

// stopLoad ends the workload run; a write must not wait for ever. broken
// says its site was killed or handed over under it, so errors are expected.
func (r *rolesRun) stopLoad(broken bool) {
	r.t.Helper()
	ld := r.load
	r.load = nil
	ld.cancel()
	select {
	case err := <-ld.done:
		if err != nil && !broken {
			r.fail("workload at %s: %v", rolesSiteName[r.prim], err)
		}
	case <-time.After(time.Minute):
		ld.target.close()
		r.fail("stuck: a write at %s waited more than a minute for its reply", rolesSiteName[r.prim])
	}
	ld.target.close()
	r.acked += ld.target.acked.Load()
}

// randomStep picks a step and checks the secondary after it.
func (r *rolesRun) randomStep() {
	type choice struct {
		weight int
		name   string
		op     func()
	}
	cs := []choice{
		{3, "write", func() { time.Sleep(time.Duration(200+r.rng.IntN(600)) * time.Millisecond) }},
		{2, "suspend-resume", r.suspendResume},
		{2, "kill-primary", r.killPrimary},
		{2, "kill-secondary", r.killSecondary},
		{3, "switchover", r.switchover},
		{2, "failover", r.failover},
		{2, "link-cut", r.cutLink},
		{2, "corrupt", r.corruptFrame},
	}
	total := 0
	for _, c := range cs {
		total += c.weight
	}
	n := r.rng.IntN(total)
	for _, c := range cs {
		if n -= c.weight; n < 0 {
			r.ops[c.name]++
			r.logStep(fmt.Sprintf("%s (primary %s)", c.name, rolesSiteName[r.prim]))
			c.op()
			r.checkSecondary()
			return
		}
	}
}

func (r *rolesRun) suspendResume() {
	r.t.Helper()
	if code, out, errOut := runDuplex(r.t, "pair", "suspend", "--all", "--config", r.cfg[r.prim]); code != 0 {
		r.fail("pair suspend --all: exit %d\n%s%s", code, out, errOut)
	}
	time.Sleep(time.Duration(300+r.rng.IntN(1200)) * time.Millisecond)
	r.checkSecondary()
	if code, out, errOut := runDuplex(r.t, "pair", "resume", "--all", "--config", r.cfg[r.prim]); code != 0 {
		r.fail("pair resume --all: exit %d\n%s%s", code, out, errOut)
	}
	// Checked in the middle of the resync at times.
	time.Sleep(time.Duration(r.rng.IntN(300)) * time.Millisecond)
	r.checkSecondary()
	r.waitDuplex("pair resume --all")
}

func (r *rolesRun) killPrimary() {
	r.t.Helper()
	p := r.prim
	r.d[p].kill()
	r.stopLoad(true)
	time.Sleep(time.Duration(r.rng.IntN(500)) * time.Millisecond)
	r.logStep(fmt.Sprintf("    %s run again as duplex %s", rolesSiteName[p], r.again[p]))
	r.start(p, r.again[p])
	r.startLoad()
	r.waitDuplex("a kill -9 of the primary site")
}

var rolesRecoverRE = regexp.MustCompile(`consistent as of (\S+) \(group (\d+)\)`)

func (r *rolesRun) killSecondary() {
	r.t.Helper()
	s := r.sec()
	st, _ := r.status(s)
	r.d[s].kill()
	if s == rolesB && r.again[s] == "secondary" {
		// The config's secondary, run as such: recovered offline as an
		// operator would after losing the site, and checked.
		code, out, errOut := runDuplex(r.t, "recover", "--config", r.cfg[s])
		if code != 0 {
			r.fail("duplex recover after kill -9 of the secondary: exit %d\n%s%s", code, out, errOut)
		}
		var group uint64
		if m := rolesRecoverRE.FindStringSubmatch(out); m != nil {
			group, _ = strconv.ParseUint(m[2], 10, 64)
		}
		if st.Group != nil && group < *st.Group {
			r.fail("journaled group lost: the secondary reported group %d before kill -9; recover came back at group %d\n%s", *st.Group, group, out)
		}
		r.logStep(fmt.Sprintf("    recovered at group %d", group))
		r.checkImages(s, "after kill -9 of the secondary and duplex recover")
	}
	time.Sleep(time.Duration(r.rng.IntN(500)) * time.Millisecond)
	r.logStep(fmt.Sprintf("    %s run again as duplex %s", rolesSiteName[s], r.again[s]))
	r.start(s, r.again[s])
	r.waitDuplex("a kill -9 of the secondary site")
}

// switchover hands the session to the secondary site with duplex
// switchover, and makes the site handed over from its secondary with duplex
// rejoin --yes; at times a site is killed -9 in the middle of the rejoin's
// copy and run again.
func (r *rolesRun) switchover() {
	r.t.Helper()
	from, to := r.prim, r.sec()
	code, _, errOut := runDuplex(r.t, "switchover", "--config", r.cfg[from], "--timeout", "50s")
	if code != 0 {
		// Refused or failed: the writes resume where they were.
		r.logStep(fmt.Sprintf("    switchover refused (exit %d): %s", code, lastLines(errOut, 2)))
		before := r.load.target.acked.Load()
		eventually(r.t, rolesWait, "writes to resume at the primary after a failed switchover", func() bool {
			return r.load.target.acked.Load() > before
		})
		r.waitDuplex("a failed switchover")
		return
	}
	r.switchovers++
	r.stopLoad(true)
	eventually(r.t, rolesWait, "the new primary to serve", func() bool {
		st, err := r.status(to)
		return err == nil && st.Role == "primary"
	})
	// The old primary holds every write it acknowledged and takes no more;
	// the new one has taken none yet: the same bytes at both.
	r.compare(fmt.Sprintf("at the switchover from %s to %s", rolesSiteName[from], rolesSiteName[to]))
	r.checkImages(to, "at the new primary after the switchover")
	r.prim = to
	if to == rolesB {
		r.again[to] = "promote"
	} else {
		r.again[to] = "primary"
	}
	if c := r.d[from].stop(); c != 0 {
		r.fail("the site handed over from (%s, duplex %s) exited %d on SIGTERM, want 0:\n%s", rolesSiteName[from], r.d[from].role, c, logTail(r.d[from].log(), 3000))
	}
	if code, out, errOut := runDuplex(r.t, "rejoin", "--config", r.cfg[from]); code != 0 {
		r.fail("duplex rejoin (the report) at %s: exit %d\n%s%s", rolesSiteName[from], code, out, errOut)
	}
	r.start(from, "rejoin")
	r.startLoad()
	if r.rng.IntN(2) == 0 {
		time.Sleep(time.Duration(r.rng.IntN(800)) * time.Millisecond)
		victim := r.rng.IntN(2)
		copying := ""
		if st, err := r.status(r.prim); err == nil {
			for _, v := range st.Volumes {
				if v.State != "duplex" {
					copying += fmt.Sprintf(" %s %s %d/%d", v.Name, v.State, v.CopiedBytes, v.SizeBytes)
				}
			}
		}
		r.logStep(fmt.Sprintf("    kill -9 of %s in the rejoin's copy (not duplex:%s)", rolesSiteName[victim], copying))
		if victim == r.prim {
			r.d[victim].kill()
			r.stopLoad(true)
			r.start(victim, r.again[victim])
			r.startLoad()
		} else {
			r.d[victim].kill()
			r.start(victim, r.again[victim])
		}
	}
	r.waitDuplex("a switchover and rejoin")
}

// failover loses the primary site (kill -9) and fails over to the other
// as the runbook says: it is stopped, then at B duplex recover (checked)
// and duplex promote, at A, the old primary rejoined to B, duplex promote,
// which applies its journal as recover does and fails over back. The lost
// site comes back with duplex rejoin --yes, which discards what it took
// that the other never had. Nothing journaled is lost: the promoted site
// holds at least the group it reported applied before the loss.
func (r *rolesRun) failover() {
	r.t.Helper()
	from, to := r.prim, r.sec()
	before, _ := r.status(to)
	r.d[from].kill()
	r.stopLoad(true)
	if c := r.d[to].stop(); c != 0 {
		r.fail("the secondary %s (duplex %s) exited %d on SIGTERM, want 0:\n%s", rolesSiteName[to], r.d[to].role, c, logTail(r.d[to].log(), 3000))
	}
	var recovered string
	if to == rolesB {
		code, out, errOut := runDuplex(r.t, "recover", "--config", r.cfg[to])
		if code != 0 {
			r.fail("duplex recover at B after the loss of A: exit %d\n%s%s", code, out, errOut)
		}
		recovered = out
		r.checkImages(to, "at B after duplex recover")
		r.start(to, "promote")
	} else {
		// Promote prints what it recovered to its log, before it serves.
		mark := len(r.d[to].log())
		r.start(to, "promote")
		recovered = r.d[to].log()[mark:]
		// From now on A is the session's primary in its own direction.
		r.again[to] = "primary"
	}
	if before.Group != nil && *before.Group > 0 {
		m := rolesRecoverRE.FindStringSubmatch(recovered)
		if m == nil {
			r.fail("the failover to %s says no group it recovered at (it reported group %d before):\n%s", rolesSiteName[to], *before.Group, recovered)
		}
		if g, _ := strconv.ParseUint(m[2], 10, 64); g < *before.Group {
			r.fail("journaled group lost: %s reported group %d before the loss of %s; the failover came back at group %d\n%s",
				rolesSiteName[to], *before.Group, rolesSiteName[from], g, recovered)
		}
		r.logStep(fmt.Sprintf("    %s recovered at group %s (reported %d before)", rolesSiteName[to], m[2], *before.Group))
	}
	r.prim = to
	r.checkImages(to, fmt.Sprintf("at %s promoted", rolesSiteName[to]))
	if code, out, errOut := runDuplex(r.t, "rejoin", "--config", r.cfg[from]); code != 0 {
		r.fail("duplex rejoin (the report) at %s: exit %d\n%s%s", rolesSiteName[from], code, out, errOut)
	}
	r.start(from, "rejoin")
	r.startLoad()
	r.waitDuplex("a failover and rejoin")
}

// cutLink cuts the link the primary dials, at its proxy, for 0.3 to 3 s
// while the writes go on (the secondary checked in the middle), then lets
// it through again.
func (r *rolesRun) cutLink() {
	r.t.Helper()
	p := r.proxy[r.prim]
	d := time.Duration(300+r.rng.IntN(2700)) * time.Millisecond
	r.logStep(fmt.Sprintf("    %s->%s cut for %s", rolesSiteName[r.prim], rolesSiteName[r.sec()], d))
	p.Cut()
	time.Sleep(d / 2)
	r.checkSecondary()
	time.Sleep(d / 2)
	p.Restore()
	r.waitDuplex("a link cut")
}

// corruptFrame flips a bit in the link the primary dials, either way: in a
// frame's bytes (its CRC catches it) or in a length prefix (the receiver
// loses the frame boundaries). The link breaks and is made again.
func (r *rolesRun) corruptFrame() {
	r.t.Helper()
	p := r.proxy[r.prim]
	dir := r.rng.IntN(2)
	length := r.rng.IntN(2) == 0
	way := [2]string{rolesSiteName[r.prim] + "->" + rolesSiteName[r.sec()], rolesSiteName[r.sec()] + "->" + rolesSiteName[r.prim]}[dir]
	before := p.Flipped.Load()
	what := "a frame's byte"
	if length {
		what = "a length prefix"
		p.CorruptLength(dir)
	} else {
		p.Corrupt(dir, 1)
	}
	deadline := time.Now().Add(rolesFlipWait)
	for p.Flipped.Load() == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p.Flipped.Load() == before {
		r.logStep(fmt.Sprintf("    %s: a bit of %s armed, not flipped within %s", way, what, rolesFlipWait))
	} else {
		r.logStep(fmt.Sprintf("    %s: a bit of %s flipped", way, what))
	}
	r.waitDuplex("a corrupt frame")
}

// checkSecondary checks the running secondary site through its read-only
// exports.
func (r *rolesRun) checkSecondary() {
	r.t.Helper()
	s := r.sec()
	holders, bad, err := r.readExports(s)
	var deps workload.Image
	if err == nil {
		deps, _, err = r.readExports(s)
	}
	if err != nil {
		r.logStep(fmt.Sprintf("    %s not checked through its exports: %v", rolesSiteName[s], err))
		return
	}
	r.report(fmt.Sprintf("at the secondary %s, through its exports", rolesSiteName[s]), holders, deps, bad)
}

func (r *rolesRun) readExports(site int) (workload.Image, []workload.Violation, error) {
	var cs []*nbd.Client
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for _, n := range r.names {
		c, err := nbd.Dial(r.nbd[site], n)
		if err != nil {
			return nil, nil, err
		}
		cs = append(cs, c)
	}
	return workload.ReadImage(r.layout(), func(v int, p []byte, off int64) error { return cs[v].ReadAt(p, off) })
}

// checkImages checks a site's images on disk (the site stopped, or taking
// no writes).
func (r *rolesRun) checkImages(site int, when string) {
	r.t.Helper()
	read, done := volumeReader(r.t, r.paths[site])
	defer done()
	img, bad, err := workload.ReadImage(r.layout(), read)
	if err != nil {
		r.fail("%s: %v", when, err)
	}
	r.report(when, img, img, bad)
}

func (r *rolesRun) report(when string, holders, deps workload.Image, bad []workload.Violation) {
	r.t.Helper()
	r.checks++
	// Early on, a kill of the primary can leave the secondary without any
	// write yet; at the end the last run's writes are everywhere.
	if written, _ := holders.Stats(); written == 0 && strings.HasSuffix(when, "at the end") {
		r.fail("%s: no write of the workload there: the check looks in the wrong place", when)
	}
	sc := workload.Scope{Run: func(c uint32) int { return int(c / rolesRunClients) }}
	all := append(bad, holders.Violations(deps, sc)...)
	if len(all) > 0 {
		r.fail("dependent-write invariant broken %s: %d blocks, first: %s", when, len(all), all[0])
	}
}

// compare fails on any block of the workload's region that differs between
// the two sites' images.
func (r *rolesRun) compare(when string) {
	r.t.Helper()
	size := int64(rolesBlocks * workload.BlockSize)
	for i, name := range r.names {
		a, b := make([]byte, size), make([]byte, size)
		for site, buf := range [][]byte{a, b} {
			f, err := os.Open(r.paths[site][i])
			if err != nil {
				r.t.Fatal(err)
			}
			_, err = f.ReadAt(buf, 0)
			f.Close()
			if err != nil {
				r.t.Fatal(err)
			}
		}
		if bytes.Equal(a, b) {
			continue
		}
		for blk := int64(0); blk < rolesBlocks; blk++ {
			o := blk * workload.BlockSize
			if !bytes.Equal(a[o:o+workload.BlockSize], b[o:o+workload.BlockSize]) {
				wa, _ := workload.Decode(a[o : o+workload.BlockSize])
				wb, _ := workload.Decode(b[o : o+workload.BlockSize])
				r.fail("acknowledged writes lost %s: %s block %d holds write %d/%d at A, %d/%d at B",
					when, name, blk, wa.Client, wa.Counter, wb.Client, wb.Counter)
			}
		}
	}
}

// finish stops the writes and the primary site, which ships everything it
// holds before it exits; once the secondary has applied every group it
// journaled, it stops too, and the sites are compared.
func (r *rolesRun) finish() {
	r.t.Helper()
	r.stopLoad(false)
	r.waitDuplex("the writes stopped")
	r.checkSecondary()
	p, s := r.prim, r.sec()
	if code := r.d[p].stop(); code != 0 {
		r.fail("%s (duplex %s) exited %d on SIGTERM at the end, want 0 (everything shipped):\n%s", rolesSiteName[p], r.d[p].role, code, logTail(r.d[p].log(), 3000))
	}
	var last control.Status
	for deadline := time.Now().Add(rolesWait); ; {
		st, err := r.status(s)
		if err == nil && st.Group != nil && st.JournaledGroup != nil && *st.Group == *st.JournaledGroup &&
			(st.HeldGroups == nil || *st.HeldGroups == 0) {
			break
		}
		last = st
		if time.Now().After(deadline) {
			r.fail("stuck: the secondary %s did not apply what it journaled within %s of the primary's stop: %+v", rolesSiteName[s], rolesWait, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := r.d[s].stop(); code != 0 {
		r.fail("%s (duplex %s) exited %d on SIGTERM at the end, want 0:\n%s", rolesSiteName[s], r.d[s].role, code, logTail(r.d[s].log(), 3000))
	}
	r.compare("at the end")
	r.checkImages(rolesA, "at A at the end")
	r.checkImages(rolesB, "at B at the end")
}
