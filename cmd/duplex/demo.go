package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/disk"
	"duplex/site"
	"duplex/workload"
)

// The demo's workload lives in the last demoRegion bytes of each volume, so the
// qemu-io commands it suggests (at offset 0) never disturb it.
const demoRegion = 16 << 20

var demoSynopsis = synopsis{"demo", "[--dir DIR] [--port-base N] [--no-workload] [--coupled] [--log-level LEVEL]"}

// runDemo runs both sites of the demo session in this process until SIGINT
// or SIGTERM, then ships everything and verifies the secondary.
func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(demoSynopsis, "Runs both sites in one process on loopback, with a dependent-write workload. "+
		"Ctrl-C stops both sites, ships everything, and verifies the secondary. The session's config is written to DIR/duplex.toml, "+
		"so that the other commands work on it.")
	dir := fs.String("dir", "", "`DIR` for the session's files (default: a new temporary directory)")
	var ports portBase
	fs.Var(&ports, "port-base", "listen on 127.0.0.1 ports `N` (primary NBD), N+1 (secondary NBD), N+2 (primary control), "+
		"N+3 (secondary link) and N+4 (secondary control) instead of 10809, 10810, 7401, 7402 and 7403; "+
		"0: ports the system picks, which the demo prints and writes to DIR/duplex.toml")
	noWorkload := fs.Bool("no-workload", false, "do not run the built-in dependent-write workload")
	coupled := fs.Bool("coupled", false, "run two sessions, db and app, coupled through an embedded etcd (DIR/db, DIR/app, DIR/etcd), "+
		"the workload's writes depending on each other across both; with --port-base N, db listens on N..N+4, app on N+5..N+9, "+
		"etcd on N+10 (clients) and N+11 (peers)")
	level := fs.logLevelFlag("warn")
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	last := 65535 - 4
	if *coupled {
		last = 65535 - coupledDemoPorts + 1
	}
	if ports.set && (ports.n < 0 || ports.n > last) {
		return fs.usageErrorf("--port-base %d: want 0, or a port from 1 to %d", ports.n, last)
	}
	log, err := fs.logger(*level)
	if err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "duplex-demo-")
		if err != nil {
			return err
		}
		*dir = d
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := fs.dirFlag("dir", abs, 0o755); err != nil {
		return err
	}
	if *coupled {
		return coupledDemo(ctx, abs, ports, !*noWorkload, log, *level, stdout)
	}
	session := config.Demo(abs)
	ports.apply(session)
	cfg, err := writeDemoConfig(session)
	if err != nil {
		return err
	}
	return demo(ctx, cfg, session, !*noWorkload, log, stdout)
}

// portBase is the value of --port-base: set says whether it was given.
type portBase struct {
	n   int
	set bool
}

func (p *portBase) String() string {
	if p == nil || !p.set {
		return ""
	}
	return strconv.Itoa(p.n)
}

func (p *portBase) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not a port number")
	}
	p.n, p.set = n, true
	return nil
}

// apply moves the demo session's listeners to the ports of p. With port 0
// the secondary's link address is not known until it listens: the
// primary's dial address is a stand-in until then (see demo).
func (p portBase) apply(c *config.Config) {
	if !p.set {
		return
	}
	port := func(i int) string {
		if p.n == 0 {
			return "127.0.0.1:0"
		}
		return "127.0.0.1:" + strconv.Itoa(p.n+i)
	}
	c.Primary.NBD, c.Secondary.NBD, c.Primary.Control = port(0), port(1), port(2)
	c.Secondary.Listen, c.Secondary.Control = port(3), port(4)
	c.Primary.Secondary = c.Secondary.Listen
	if p.n == 0 {
		c.Primary.Secondary = "127.0.0.1:1"
	}
}

// writeDemoConfig writes DIR/duplex.toml and the control token, so that the
// other commands, and the two daemons as separate processes, run this session.
func writeDemoConfig(session *config.Config) (*config.Config, error) {
	text, err := session.Encode()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(session.Dir, "duplex.toml")
	// Whole or not at all: a status command may read it while the demo
	// rewrites it with the ports bound.
	if err := disk.WriteFileAtomic(disk.OS, path, text); err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o644); err != nil {
		return nil, err
	}
	if tok := session.TokenPath(); tok != "" {
		if _, err := os.Stat(tok); errors.Is(err, os.ErrNotExist) {
			b := make([]byte, 24)
			rand.Read(b)
			if err := os.WriteFile(tok, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
				return nil, err
			}
		}
	}
	// Load it back: the demo runs exactly what the file says.
	return config.Load(path)
}

// demoSession is one session of the demo, both its sites running in this
// process.
type demoSession struct {
	cfg  *config.Config // as loaded: the listeners as the file first named them
	prim *site.Primary
	// sec is the secondary site running: after a disk fault, the one
	// opened again.
	sec      atomic.Pointer[site.Secondary]
	stopPrim context.CancelFunc
	stopSec  context.CancelFunc
	primDone chan error
	secDone  chan error
}

// startDemoSession opens both sites of cfg, which was loaded from what
// session says, and runs them. It returns an error with a nil session if a
// site did not open; with a session (which then runs, and must be stopped)
// if the config with the ports bound could not be written. opts and retry
// are the secondary's (tests inject disk faults and shorten the backoff;
// the demo leaves both zero).
func startDemoSession(ctx context.Context, cfg, session *config.Config, log *slog.Logger, opts site.SecondaryOptions, retry site.DiskRetry) (*demoSession, error) {
	d := &demoSession{cfg: cfg, primDone: make(chan error, 1), secDone: make(chan error, 1)}
	// The sites' starts are given up on ctx's end (SIGTERM), as the
	// daemons' are: one that waits on a disk that stopped answering would
	// otherwise hold the demo. Once both run, ctx ends the demo's loop
	// instead, which stops them in order (the primary ships everything
	// first): the starts' context is let go of ctx then.
	startCtx, endStart := context.WithCancel(context.Background())
	stopEnding := context.AfterFunc(ctx, endStart)
	defer stopEnding()
	if opts.Context == nil {
		opts.Context = startCtx
	}
	// As duplex secondary's: after a disk fault the secondary opens itself
	// again, as a restart does, and the demo goes on.
	secCtx, stopSec := context.WithCancel(context.Background())
	opened := make(chan struct{})
	go func() {
		_, err := site.RunSecondary(secCtx, cfg, log, opts, retry, func(s *site.Secondary) {
			if d.sec.Swap(s) == nil {
				close(opened)
			}
		})
		d.secDone <- err
	}()
	select {
	case <-opened:
	case err := <-d.secDone:
		stopSec()
		return nil, err
	}
	d.stopSec = stopSec
	sec := d.sec.Load()
	// With port 0 the primary dials where the secondary listens, and the
	// config file names the ports bound, for the other commands.
	pcfg := *cfg
	pcfg.Primary.Secondary = sec.ListenAddr()
	prim, err := site.OpenPrimary(&pcfg, log, site.PrimaryOptions{Context: startCtx})
	if err != nil {
		stopSec()
		<-d.secDone
		return nil, err
	}
	d.prim = prim
	var primCtx context.Context
	primCtx, d.stopPrim = context.WithCancel(context.Background())
	go func() { d.primDone <- prim.Run(primCtx, time.Minute) }()

	if session.Primary.NBD != prim.NBDAddr() || session.Secondary.Listen != sec.ListenAddr() {
		session.Primary.NBD, session.Primary.Control, session.Primary.Secondary = prim.NBDAddr(), prim.ControlAddr(), sec.ListenAddr()
		session.Secondary.Listen, session.Secondary.Control, session.Secondary.NBD = sec.ListenAddr(), sec.ControlAddr(), sec.NBDAddr()
		if _, err := writeDemoConfig(session); err != nil {
			return d, fmt.Errorf("config with the ports bound: %w", err)
		}
	}
	return d, nil
}

// secondary is the secondary site running.
func (d *demoSession) secondary() *site.Secondary { return d.sec.Load() }

// stopped returns why a site of d stopped while the demo runs, or nil.
func (d *demoSession) stopped() error {
	select {
	case err := <-d.primDone:
		d.primDone <- err
		return wrapOnce("primary stopped", err)
	case err := <-d.secDone:
		d.secDone <- err
		return wrapOnce("secondary stopped", err)
	default:
		return nil
	}
}

// stop stops the primary, which ships everything it holds, waits until the
// secondary applied it (if catchUp), and stops the secondary. It returns
// the time of the last group the secondary acknowledged, and the errors of
// both stops, the primary's first: the secondary's (its disk) is no less
// the operator's to know for the primary's having failed.
func (d *demoSession) stop(catchUp bool) (int64, error) {
	var failed error
	d.stopPrim()
	if err := <-d.primDone; err != nil {
		// The site's errors name the part they come from.
		failed = wrapOnce("primary", err)
	}
	acked := d.prim.Mover().Stats().Acked
	deadline := time.Now().Add(30 * time.Second)
	for catchUp && d.secondary().Replica().Stats().Group < acked.Group && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	d.stopSec()
	if err := <-d.secDone; err != nil {
		failed = errors.Join(failed, wrapOnce("secondary", err))
	}
	return acked.Time, failed
}

// demo runs the session of cfg, which was loaded from what session says.
func demo(ctx context.Context, cfg, session *config.Config, withWorkload bool, log *slog.Logger, stdout io.Writer) error {
	d, failed := startDemoSession(ctx, cfg, session, log, site.SecondaryOptions{}, site.DiskRetry{})
	if d == nil {
		return failed
	}
	prim, sec := d.prim, d.secondary()
	names := cfg.VolumeNames()
	pv, _, _ := cfg.PrimaryVolume(names[0])
	primNBD, secNBD := prim.NBDAddr(), sec.NBDAddr()
	if failed == nil {
		fmt.Fprintf(stdout, `Duplex demo: session %q in %s
  primary NBD     nbd://%s/<volume>   volumes: %v (%s each)
  secondary NBD   nbd://%s/<volume>   read-only, always at a consistency-group boundary
  status pages    http://%s/ (primary)   http://%s/ (secondary)

Try, in another terminal:
  qemu-io -f raw nbd://%s/%s -c 'write -P 0xab 0 1M'
  nbdinfo nbd://%s/%s
  qemu-io -f raw -r nbd://%s/%s -c 'read -P 0xab 0 1M'
  go run ./cmd/duplex status --config %s

Ctrl-C stops both sites, ships everything, and verifies the secondary.
`, cfg.Session, cfg.Dir, primNBD, names, bytesIEC(int64(pv.Size)), secNBD, prim.ControlAddr(), sec.ControlAddr(),
			primNBD, names[0], secNBD, names[0], secNBD, names[0], filepath.Join(cfg.Dir, "duplex.toml"))
	}

	vols := demoVolumes([]*demoSession{d})
	layout := workload.Layout{Volumes: len(vols.vols), BlocksPerVolume: demoRegion / workload.BlockSize, Clients: 4}
	var stopWork func() error
	if withWorkload && failed == nil {
		layout, failed = vols.nextRun(layout)
	}
	if withWorkload && failed == nil {
		fmt.Fprintf(stdout, "Running a dependent-write workload: %d clients over %d volumes (last %s of each).\n\n", layout.Clients, len(names), bytesIEC(demoRegion))
		stopWork = vols.run(layout)
	}

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	line := newStatusLine(stdout)
	var lastBytes uint64
loop:
	for failed == nil {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			if failed = d.stopped(); failed != nil {
				break loop
			}
			ps, ss := prim.Status(), d.secondary().Status()
			rate := float64(ps.BytesReplicate-lastBytes) / 1e6
			lastBytes = ps.BytesReplicate
			fill := 0.0
			if *ps.SidefileLimitBytes > 0 {
				fill = 100 * float64(*ps.SidefileBytes) / float64(*ps.SidefileLimitBytes)
			}
			ct := "none yet"
			if ss.ConsistencyTime != "" {
				t, _ := time.Parse(time.RFC3339Nano, ss.ConsistencyTime)
				ct = t.Format("15:04:05.000")
			}
			line.update(fmt.Sprintf("consistent as of %s  lag %6s  link %-12s  %7.1f MB/s  sidefile %5.1f%%  groups %d",
				ct, lagText(ss.LagSeconds), ps.Link, rate, fill, *ss.GroupsApplied))
		}
	}
	line.end()

	if stopWork != nil {
		if err := stopWork(); err != nil && failed == nil {
			failed = fmt.Errorf("workload: %v", err)
		}
	}
	fmt.Fprintln(stdout, "Stopping: shipping everything the primary holds...")
	behind := map[string]string{}
	notDuplex(d.prim.Status(), cfg, "", behind)
	ct, err := d.stop(true)
	if failed == nil {
		failed = err
	}
	if failed != nil {
		return failed
	}
	fmt.Fprintf(stdout, "Verification (secondary consistent as of %s):\n", control.FormatTime(ct))
	return verifyDemo([]*config.Config{cfg}, layout, stopWork != nil, behind, stdout)
}

// notDuplex adds to into the state at the primary, whose status is st, of
// each volume of cfg whose pair is not duplex ("": no pair), under its
// name after prefix.
func notDuplex(st control.Status, cfg *config.Config, prefix string, into map[string]string) {
	state := map[string]string{}
	for _, v := range st.Volumes {
		state[v.Name] = v.State
	}
	for _, name := range cfg.VolumeNames() {
		if state[name] != "duplex" {
			into[prefix+name] = state[name]
		}
	}
}

// behindBecause says why the copy of volume name of cfg is behind its
// primary, its pair state at the demo's stop, and what brings it up to
// date.
func behindBecause(cfg *config.Config, name, state string) string {
	path := filepath.Join(cfg.Dir, "duplex.toml")
	switch state {
	case "":
		return fmt.Sprintf("%s was no pair at the stop: its copy stopped where the pair ended (duplex pair add %s --config %s --wait makes it one again, before stopping the demo)", name, name, path)
	case "suspended":
		return fmt.Sprintf("the pair was suspended at the stop: its copy stopped at the suspension (duplex pair resume %s --config %s --wait brings it up to date, before stopping the demo)", name, path)
	}
	return fmt.Sprintf("the pair was %s at the stop, its copy not ended (stop the demo once duplex status --config %s says duplex)", state, path)
}

// verifyDemo compares every secondary image of the sessions of cfgs with
// its primary, and checks the dependent-write invariant on the secondaries
// of all of them together: the workload ran over their volumes in order.
// behind holds the pair state of the volumes not duplex at the stop (see
// notDuplex), whose copies are behind: a difference there is said to be
// that, not a lost write.
func verifyDemo(cfgs []*config.Config, layout workload.Layout, withWorkload bool, behind map[string]string, stdout io.Writer) error {
	ok := true
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var bases []int64
	for _, cfg := range cfgs {
		for _, name := range cfg.VolumeNames() {
			pv, _, _ := cfg.PrimaryVolume(name)
			sv, _ := cfg.SecondaryVolume(name)
			label := name
			if len(cfgs) > 1 {
				label = cfg.Session + "/" + name
			}
			same, err := sameFile(pv.Path, sv.Path)
			switch {
			case err != nil:
				fmt.Fprintf(stdout, "  %s: %v\n", label, err)
				ok = false
			case same:
				fmt.Fprintf(stdout, "  %s: secondary identical to primary (%s)\n", label, bytesIEC(int64(pv.Size)))
			default:
				if state, known := behind[label]; known {
					fmt.Fprintf(stdout, "  %s: secondary DIFFERS from primary: %s\n", label, behindBecause(cfg, name, state))
				} else {
					fmt.Fprintf(stdout, "  %s: secondary DIFFERS from primary\n", label)
				}
				ok = false
			}
			if !withWorkload {
				continue
			}
			f, err := os.Open(sv.Path)
			if err != nil {
				return err
			}
			files = append(files, f)
			bases = append(bases, int64(pv.Size)-demoRegion)
		}
	}
	if withWorkload {
		img, vs, err := workload.ReadImage(layout, func(v int, b []byte, off int64) error {
			_, err := files[v].ReadAt(b, bases[v]+off)
			return err
		})
		if err != nil {
			return err
		}
		vs = append(vs, img.Violations(img, demoRuns(layout))...)
		on := "the secondary"
		if len(cfgs) > 1 {
			on = "the secondaries together"
		}
		why := ""
		if len(vs) > 0 && len(behind) > 0 {
			why = " (a copy behind the others' holds back writes that theirs depend on)"
		}
		fmt.Fprintf(stdout, "  dependent-write check on %s: %d violations%s\n", on, len(vs), why)
		if len(vs) > 0 {
			ok = false
		}
	}
	if !ok {
		return errors.New("verification failed: the secondary is not what the primary held")
	}
	if len(cfgs) == 1 {
		fmt.Fprintf(stdout, "The session's files stay in %s; run the demo again with --dir to continue it.\n", cfgs[0].Dir)
	}
	return nil
}

func sameFile(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 4<<20), make([]byte, 4<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == ea, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}

// demoTarget sends workload writes through the primaries' write paths,
// into the last demoRegion bytes of each volume: workload volume i is
// vols[i].
type demoTarget struct {
	vols []demoVolume
}

type demoVolume struct {
	p    *site.Primary
	name string
	path string // the primary's image
	size int64
}

// demoVolumes lists the volumes of the sessions, in order.
func demoVolumes(sessions []*demoSession) *demoTarget {
	t := &demoTarget{}
	for _, d := range sessions {
		for _, name := range d.cfg.VolumeNames() {
			pv, _, _ := d.cfg.PrimaryVolume(name)
			t.vols = append(t.vols, demoVolume{p: d.prim, name: name, path: pv.Path, size: int64(pv.Size)})
		}
	}
	return t
}

// nextRun numbers the clients of this run past those whose writes the
// volumes already hold, from a run of the demo before on the same
// directory. Reusing the numbers would write lower counters over blocks
// that the earlier run's writes depend on, and the check would count each
// such block as a violation of a copy that is in fact consistent.
func (t *demoTarget) nextRun(layout workload.Layout) (workload.Layout, error) {
	files := make([]*os.File, len(t.vols))
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	img, _, err := workload.ReadImage(layout, func(v int, b []byte, off int64) error {
		if files[v] == nil {
			f, err := os.Open(t.vols[v].path)
			if err != nil {
				return err
			}
			files[v] = f
		}
		_, err := files[v].ReadAt(b, t.vols[v].size-demoRegion+off)
		return err
	})
	if err != nil {
		return layout, fmt.Errorf("reading what an earlier run wrote: %w", err)
	}
	_, highest := img.Stats()
	var top uint32
	for c := range highest {
		top = max(top, c)
	}
	n := uint32(layout.Clients)
	layout.FirstClient = (top + n - 1) / n * n
	return layout, nil
}

// demoRuns tells the check which run of the demo a client belongs to: runs
// follow each other, so an earlier run's dependency is also met by a later
// run's write at its place.
func demoRuns(layout workload.Layout) workload.Scope {
	return workload.Scope{Run: func(client uint32) int { return int((client - 1) / uint32(layout.Clients)) }}
}

// run runs the dependent-write workload over the volumes until the
// function it returns is called, which returns the workload's error.
func (t *demoTarget) run(layout workload.Layout) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := workload.Run(ctx, layout, t, 0, uint64(time.Now().UnixNano()))
		done <- err
	}()
	return func() error {
		cancel()
		return <-done
	}
}

func (t *demoTarget) WriteAt(ctx context.Context, vol int, b []byte, off int64) error {
	// Paced so the demo leaves the machine usable for the suggested commands.
	time.Sleep(500 * time.Microsecond)
	v := t.vols[vol]
	return v.p.Write(ctx, v.name, b, v.size-demoRegion+off)
}
