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
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/site"
	"duplex/workload"
)

// The demo's workload lives in the last demoRegion bytes of each volume, so the
// qemu-io commands it suggests (at offset 0) never disturb it.
const demoRegion = 16 << 20

var demoSynopsis = synopsis{"demo", "[--dir DIR] [--no-workload] [--log-level LEVEL]"}

// runDemo runs both sites of the demo session in this process until SIGINT
// or SIGTERM, then ships everything and verifies the secondary.
func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(demoSynopsis, "Runs both sites in one process on loopback, with a dependent-write workload. "+
		"Ctrl-C stops both sites, ships everything, and verifies the secondary. The session's config is written to DIR/duplex.toml, "+
		"so that the other commands work on it.")
	dir := fs.String("dir", "", "`DIR` for the session's files (default: a new temporary directory)")
	noWorkload := fs.Bool("no-workload", false, "do not run the built-in dependent-write workload")
	level := fs.logLevelFlag("warn")
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
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
	cfg, err := writeDemoConfig(abs)
	if err != nil {
		return err
	}
	return demo(ctx, cfg, !*noWorkload, log, stdout)
}

// writeDemoConfig writes DIR/duplex.toml and the control token, so that the
// other commands, and the two daemons as separate processes, run this session.
func writeDemoConfig(dir string) (*config.Config, error) {
	cfg := config.Demo(dir)
	text, err := cfg.Encode()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "duplex.toml")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		return nil, err
	}
	if tok := cfg.TokenPath(); tok != "" {
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

func demo(ctx context.Context, cfg *config.Config, withWorkload bool, log *slog.Logger, stdout io.Writer) error {
	sec, err := site.OpenSecondary(cfg, log, site.SecondaryOptions{})
	if err != nil {
		return err
	}
	prim, err := site.OpenPrimary(cfg, log, site.PrimaryOptions{})
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

	names := cfg.VolumeNames()
	pv, _, _ := cfg.PrimaryVolume(names[0])
	fmt.Fprintf(stdout, `Duplex demo: session %q in %s
  primary NBD     nbd://%s/<volume>   volumes: %v (%s each)
  secondary NBD   nbd://%s/<volume>   read-only, always at a consistency-group boundary

Try, in another terminal:
  qemu-io -f raw nbd://%s/%s -c 'write -P 0xab 0 1M'
  nbdinfo nbd://%s/%s
  qemu-io -f raw -r nbd://%s/%s -c 'read -P 0xab 0 1M'
  go run ./cmd/duplex status --config %s

Ctrl-C stops both sites, ships everything, and verifies the secondary.
`, cfg.Session, cfg.Dir, cfg.Primary.NBD, names, bytesIEC(int64(pv.Size)), cfg.Secondary.NBD,
		cfg.Primary.NBD, names[0], cfg.Secondary.NBD, names[0], cfg.Secondary.NBD, names[0], filepath.Join(cfg.Dir, "duplex.toml"))

	layout := workload.Layout{Volumes: len(names), BlocksPerVolume: demoRegion / workload.BlockSize, Clients: 4}
	wctx, stopWork := context.WithCancel(context.Background())
	workDone := make(chan error, 1)
	if withWorkload {
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
	var failed error
loop:
	for {
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
				ct, time.Duration(ss.LagSeconds*float64(time.Second)).Round(time.Millisecond), ps.Link, rate, fill, *ss.GroupsApplied))
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
