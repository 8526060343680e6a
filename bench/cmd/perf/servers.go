package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"duplex/bench/fiojson"
	"duplex/bench/harness"
	"duplex/control"
	"duplex/internal/freeport"
)

// bench holds what the sections share: nbdkit, the Duplex pair the fio jobs
// run against, and the saturation figures later sections start from.
type bench struct {
	s          settings
	nbdkit     *harness.Daemon
	nbdkitAddr string
	// nbdkitImage is the file nbdkit serves.
	nbdkitImage string
	pair        *pair
	// cmp is the session of the compared build (-compare) in the write
	// and lag sections, started by the first that needs it.
	cmp *pair
	// satRand is Duplex's median bandwidth (bytes/s) for the 4 KiB random
	// qd16 write job.
	satRand float64
}

func (b *bench) close() {
	if b.nbdkit != nil {
		b.nbdkit.Stop(10 * time.Second)
	}
	if b.pair != nil {
		b.pair.stop()
	}
	if b.cmp != nil {
		b.cmp.stop()
	}
}

// comparePair starts the compared build's session beside the first's: the
// same spec, its volumes copies of the same prefilled image.
func (b *bench) comparePair(ctx context.Context) (*pair, error) {
	if b.cmp != nil {
		return b.cmp, nil
	}
	dir := filepath.Join(b.s.out, "write")
	primDir := ""
	if b.s.primaryDir != "" {
		primDir = filepath.Join(b.s.primaryDir, "compare")
	}
	cmp, err := startPair(ctx, b.s.compare, filepath.Join(dir, "compare"),
		harness.Spec{Session: "bench", Subsystems: b.s.subsystems, VolumeSize: b.s.volSize, SidefileLimit: b.sidefileLimit(),
			PrimaryDir: primDir}, b.nbdkitImage)
	if err != nil {
		return nil, err
	}
	b.cmp = cmp
	return cmp, nil
}

// pair is a Duplex primary and secondary on this machine.
type pair struct {
	sess      *harness.Session
	prim, sec *harness.Daemon
}

func (p *pair) stop() {
	// The primary first: on SIGTERM it ships what it holds.
	if p.prim != nil {
		p.prim.Stop(2 * time.Minute)
	}
	if p.sec != nil {
		p.sec.Stop(time.Minute)
	}
}

// uri is the fio --uri of volume i of the primary.
func (p *pair) uri(i int) string {
	return "nbd://" + p.sess.Config.Primary.NBD + "/" + p.sess.Volumes[i]
}

func (p *pair) primCtl() string { return p.sess.Config.Primary.Control }
func (p *pair) secCtl() string  { return p.sess.Config.Secondary.Control }

// secondaryFlags are the flags every secondary started gets (-secondary-log-level).
var secondaryFlags []string

// startPair writes a session under dir and starts both sites; it returns once
// the link is up, and with a prefill once the initial copy is over and
// shipped: a job run during the copy would count the copy's reads, sends and
// writes at both sites as the job's.
func startPair(ctx context.Context, bin, dir string, spec harness.Spec, prefill string) (*pair, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	sess, err := harness.NewSession(dir, spec)
	if err != nil {
		return nil, err
	}
	if prefill != "" {
		// The volumes start as copies of the prefilled image, so that reads
		// hit data and writes overwrite allocated blocks, as on nbdkit.
		for _, p := range append(sess.PrimaryPaths(), sess.SecondaryPaths()...) {
			if err := copyFile(ctx, prefill, p); err != nil {
				return nil, err
			}
		}
	}
	p := &pair{sess: sess}
	if p.sec, err = harness.StartSite(bin, "secondary", sess, filepath.Join(dir, "secondary.log"), secondaryFlags...); err != nil {
		return nil, err
	}
	if p.prim, err = harness.StartSite(bin, "primary", sess, filepath.Join(dir, "primary.log")); err != nil {
		p.stop()
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := harness.WaitStatus(wctx, p.prim, p.primCtl(), harness.Connected); err != nil {
		p.stop()
		return nil, err
	}
	if prefill != "" {
		if err := p.waitCopied(ctx); err != nil {
			p.stop()
			return nil, err
		}
	}
	return p, nil
}

// waitCopied waits until every volume is duplex (its initial copy over)
// and the sidefile is empty (the copy shipped).
func (p *pair) waitCopied(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	_, err := harness.WaitStatus(wctx, p.prim, p.primCtl(), func(st control.Status) bool {
		if st.Link != "connected" || st.SidefileBytes == nil || *st.SidefileBytes != 0 || len(st.Volumes) == 0 {
			return false
		}
		for _, v := range st.Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("waiting for the initial copy: %w", err)
	}
	return nil
}

// drain waits until the primary holds nothing for replication (every update
// journaled at the secondary), so that one job's replication does not run
// into the next job's measurement. It returns how long that took.
func (p *pair) drain(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	_, err := harness.WaitStatus(wctx, p.prim, p.primCtl(), func(st control.Status) bool {
		return st.SidefileBytes != nil && *st.SidefileBytes == 0 && st.Link == "connected"
	})
	return time.Since(start), err
}

func copyFile(ctx context.Context, src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "cp", "--sparse=never", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp %s %s: %v: %s", src, dst, err, out)
	}
	return nil
}

// startNbdkit serves image with nbdkit's file plugin on a free loopback port.
// -f keeps it in the foreground, a child of this process; -P writes its pid
// as the setup asks, so a script can find it too.
func startNbdkit(ctx context.Context, dir, image string) (*harness.Daemon, string, error) {
	addrs, err := freeport.Addrs(1)
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(addrs[0])
	d, err := harness.Start("nbdkit", filepath.Join(dir, "nbdkit.log"), "nbdkit", "-f", "--exit-with-parent",
		"-P", filepath.Join(dir, "nbdkit.pid"), "-i", "127.0.0.1", "-p", port, "file", image)
	if err != nil {
		return nil, "", err
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addrs[0], time.Second)
		if err == nil {
			c.Close()
			return d, addrs[0], nil
		}
		if d.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
			d.Stop(5 * time.Second)
			return nil, "", fmt.Errorf("nbdkit did not start: %s", d.LogTail(1000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fio runs fio with args, its JSON report kept as out/fio/NAME.json, and
// returns its jobs.
func (b *bench) fio(ctx context.Context, name string, args ...string) ([]fiojson.Job, error) {
	jobs, _, err := b.fioCPU(ctx, name, args...)
	return jobs, err
}

// fioCPU is fio, and also returns the CPU time fio used (user+system, its
// job processes included: the rusage wait4 gives counts the children fio
// waited for): a third of the whole system's CPU a write at 4 KiB.
func (b *bench) fioCPU(ctx context.Context, name string, args ...string) ([]fiojson.Job, time.Duration, error) {
	dir := filepath.Join(b.s.out, "fio")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, err
	}
	out := filepath.Join(dir, name+".json")
	full := append([]string{"--output-format=json", "--output=" + out}, args...)
	cmd := exec.CommandContext(ctx, "fio", full...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, 0, fmt.Errorf("fio %s: %v\n%s", strings.Join(full, " "), err, b)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	jobs, err := fiojson.ParseFile(out)
	if err != nil {
		return nil, 0, err
	}
	for _, j := range jobs {
		if j.Error != 0 {
			return nil, 0, fmt.Errorf("fio job %s failed with error %d (see %s)", j.Name, j.Error, out)
		}
	}
	return jobs, cpu, nil
}

// statusCLI reads a site's status the way scripts do: duplex status --json.
func (b *bench) statusCLI(ctx context.Context, addr string) (control.Status, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, b.s.duplex, "status", "--addr", addr, "--json").Output()
	if err != nil {
		return control.Status{}, fmt.Errorf("duplex status --addr %s: %w", addr, err)
	}
	var st control.Status
	if err := json.Unmarshal(out, &st); err != nil {
		return control.Status{}, fmt.Errorf("duplex status --addr %s: %w", addr, err)
	}
	return st, nil
}
