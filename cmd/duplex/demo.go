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

var demoSynopsis = synopsis{"demo", "[--dir DIR] [--port-base N] [--no-workload] [--log-level LEVEL]"}

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
	level := fs.logLevelFlag("warn")
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	if ports.set && (ports.n < 0 || ports.n > 65535-4) {
		return fs.usageErrorf("--port-base %d: want 0, or a port from 1 to 65531", ports.n)
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
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return err
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

// demo runs the session of cfg, which was loaded from what session says.
func demo(ctx context.Context, cfg, session *config.Config, withWorkload bool, log *slog.Logger, stdout io.Writer) error {
	sec, err := site.OpenSecondary(cfg, log, site.SecondaryOptions{})
	if err != nil {
		return err
	}
	// With port 0 the primary dials where the secondary listens, and the
	// config file names the ports bound, for the other commands.
	pcfg := *cfg
	pcfg.Primary.Secondary = sec.ListenAddr()
	prim, err := site.OpenPrimary(&pcfg, log, site.PrimaryOptions{})
	if err != nil {
		sec.Close()
		return err
	}

	secCtx, stopSec := context.WithCancel(context.Background())
	secDone := make(chan error, 1)
	go func() { secDone <- sec.Run(secCtx) }()
	primCtx, stopPrim := context.WithCancel(context.Background())
	primDone := make(chan error, 1)
	go func() { primDone <- prim.Run(primCtx, time.Minute) }()

	var failed error
	if session.Primary.NBD != prim.NBDAddr() || session.Secondary.Listen != sec.ListenAddr() {
		session.Primary.NBD, session.Primary.Control, session.Primary.Secondary = prim.NBDAddr(), prim.ControlAddr(), sec.ListenAddr()
		session.Secondary.Listen, session.Secondary.Control, session.Secondary.NBD = sec.ListenAddr(), sec.ControlAddr(), sec.NBDAddr()
		if _, failed = writeDemoConfig(session); failed != nil {
			failed = fmt.Errorf("config with the ports bound: %w", failed)
		}
	}
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

	layout := workload.Layout{Volumes: len(names), BlocksPerVolume: demoRegion / workload.BlockSize, Clients: 4}
	wctx, stopWork := context.WithCancel(context.Background())
	workDone := make(chan error, 1)
	if withWorkload && failed == nil {
		fmt.Fprintf(stdout, "Running a dependent-write workload: %d clients over %d volumes (last %s of each).\n\n", layout.Clients, len(names), bytesIEC(demoRegion))
		go func() {
			_, err := workload.Run(wctx, layout, &demoTarget{p: prim, names: names, size: int64(pv.Size)}, 0, uint64(time.Now().UnixNano()))
			workDone <- err
		}()
	} else {
		workDone <- nil
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
		case err := <-primDone:
			failed = fmt.Errorf("primary stopped: %v", err)
			primDone <- err
			break loop
		case err := <-secDone:
			failed = fmt.Errorf("secondary stopped: %v", err)
			secDone <- err
			break loop
		case <-tick.C:
			ps, ss := prim.Status(), sec.Status()
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

	stopWork()
	if err := <-workDone; err != nil && failed == nil {
		failed = fmt.Errorf("workload: %v", err)
	}
	fmt.Fprintln(stdout, "Stopping: shipping everything the primary holds...")
	stopPrim()
	if err := <-primDone; err != nil && failed == nil {
		failed = fmt.Errorf("primary: %v", err)
	}
	acked := prim.Mover().Stats().Acked
	deadline := time.Now().Add(30 * time.Second)
	for sec.Replica().Stats().Group < acked.Group && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stopSec()
	if err := <-secDone; err != nil && failed == nil {
		failed = fmt.Errorf("secondary: %v", err)
	}
	if failed != nil {
		return failed
	}
	return verifyDemo(cfg, layout, withWorkload, acked.Time, stdout)
}

// verifyDemo compares every secondary image with its primary and checks the
// dependent-write invariant on the secondary.
func verifyDemo(cfg *config.Config, layout workload.Layout, withWorkload bool, ct int64, stdout io.Writer) error {
	fmt.Fprintf(stdout, "Verification (secondary consistent as of %s):\n", control.FormatTime(ct))
	ok := true
	for _, name := range cfg.VolumeNames() {
		pv, _, _ := cfg.PrimaryVolume(name)
		sv, _ := cfg.SecondaryVolume(name)
		same, err := sameFile(pv.Path, sv.Path)
		switch {
		case err != nil:
			fmt.Fprintf(stdout, "  %s: %v\n", name, err)
			ok = false
		case same:
			fmt.Fprintf(stdout, "  %s: secondary identical to primary (%s)\n", name, bytesIEC(int64(pv.Size)))
		default:
			fmt.Fprintf(stdout, "  %s: secondary DIFFERS from primary\n", name)
			ok = false
		}
	}
	if withWorkload {
		files := make([]*os.File, 0, len(cfg.VolumeNames()))
		defer func() {
			for _, f := range files {
				f.Close()
			}
		}()
		var bases []int64
		for _, name := range cfg.VolumeNames() {
			sv, _ := cfg.SecondaryVolume(name)
			pv, _, _ := cfg.PrimaryVolume(name)
			f, err := os.Open(sv.Path)
			if err != nil {
				return err
			}
			files = append(files, f)
			bases = append(bases, int64(pv.Size)-demoRegion)
		}
		vs, err := workload.Check(layout, func(v int, b []byte, off int64) error {
			_, err := files[v].ReadAt(b, bases[v]+off)
			return err
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  dependent-write check on the secondary: %d violations\n", len(vs))
		if len(vs) > 0 {
			ok = false
		}
	}
	if !ok {
		return errors.New("verification failed: the secondary is not what the primary held")
	}
	fmt.Fprintf(stdout, "The session's files stay in %s; run the demo again with --dir to continue it.\n", cfg.Dir)
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

// demoTarget sends workload writes through the primary's write path, into the
// last demoRegion bytes of each volume.
type demoTarget struct {
	p     *site.Primary
	names []string
	size  int64
}

func (t *demoTarget) WriteAt(ctx context.Context, vol int, b []byte, off int64) error {
	// Paced so the demo leaves the machine usable for the suggested commands.
	time.Sleep(500 * time.Microsecond)
	return t.p.Write(ctx, t.names[vol], b, t.size-demoRegion+off)
}
