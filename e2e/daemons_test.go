package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/bench/harness"
	"duplex/config"
	"duplex/control"
	"duplex/internal/testenv"
	"duplex/nbd"
	"duplex/site"
)

// This file runs the sites the way users do: the duplex binary as two real
// processes, driven through NBD and the control address. Its helpers serve
// tools_test.go, primarycrash_test.go and tls_test.go as well.

var buildOnce struct {
	sync.Once
	path string
	err  error
	out  []byte
}

// duplexBinary builds cmd/duplex once per test process. The binary's
// directory stays until the process exits (directories of earlier, finished
// test processes are removed here).
func duplexBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		removeStaleBinaryDirs()
		dir, err := os.MkdirTemp("", fmt.Sprintf("duplex-e2e-bin-%d-", os.Getpid()))
		if err != nil {
			buildOnce.err = err
			return
		}
		path := filepath.Join(dir, "duplex")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", path, "duplex/cmd/duplex").CombinedOutput()
		if err != nil {
			buildOnce.err, buildOnce.out = err, out
			return
		}
		buildOnce.path = path
	})
	if buildOnce.err != nil {
		t.Fatalf("go build duplex/cmd/duplex: %v\n%s", buildOnce.err, buildOnce.out)
	}
	return buildOnce.path
}

// removeStaleBinaryDirs removes binary directories left by test processes
// that are gone.
func removeStaleBinaryDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "duplex-e2e-bin-*-*"))
	for _, d := range dirs {
		f := strings.Split(filepath.Base(d), "-")
		if len(f) < 5 {
			continue
		}
		pid, err := strconv.Atoi(f[3])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// daemon is one duplex site running as a process.
type daemon struct {
	t       *testing.T
	role    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	code    int // exit code, valid once done is closed
}

// startDaemon runs `duplex ROLE --config CFG`, stdout and stderr appended to
// logPath. The process is killed at the end of the test if still running;
// when the test failed, its log is printed.
func startDaemon(t *testing.T, role, cfgPath, logPath string, flags ...string) *daemon {
	t.Helper()
	return startDaemonIn(t, "", role, cfgPath, logPath, flags...)
}

// startDaemonIn is startDaemon in the network namespace netns ("": the
// test's own). ip netns exec execs the daemon in its own process, so that
// the process signalled is the daemon's.
func startDaemonIn(t *testing.T, netns, role, cfgPath, logPath string, flags ...string) *daemon {
	t.Helper()
	return startDaemonCPU(t, netns, "", role, cfgPath, logPath, flags...)
}

// startDaemonCPU is startDaemonIn on the CPUs cpus (taskset -c; "": any).
func startDaemonCPU(t *testing.T, netns, cpus, role, cfgPath, logPath string, flags ...string) *daemon {
	t.Helper()
	bin := duplexBinary(t)
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(lf, "=== %s duplex %s --config %s %s\n", time.Now().Format(time.RFC3339Nano), role, cfgPath, strings.Join(flags, " "))
	argv := append([]string{bin, role, "--config", cfgPath}, flags...)
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	harness.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("start duplex %s: %v", role, err)
	}
	d := &daemon{t: t, role: role, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		lf.Close()
		d.code = exitCode(err)
		close(d.done)
	}()
	t.Cleanup(func() {
		if !d.exited() {
			cmd.Process.Signal(syscall.SIGKILL)
			<-d.done
		}
		if t.Failed() {
			t.Logf("log of %s (%s):\n%s", role, logPath, logTail(readLog(logPath), 6000))
		}
	})
	return d
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func logTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its exit code.
func (d *daemon) wait(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.done:
		return d.code
	case <-time.After(timeout):
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.done
		d.t.Fatalf("duplex %s did not exit within %s\n%s", d.role, timeout, logTail(readLog(d.logPath), 4000))
		return -1
	}
}

// stop sends SIGTERM and returns the exit code.
func (d *daemon) stop() int {
	d.t.Helper()
	if d.exited() {
		return d.code
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !d.exited() {
		d.t.Fatal(err)
	}
	return d.wait(time.Minute)
}

// kill sends SIGKILL and waits.
func (d *daemon) kill() {
	d.t.Helper()
	if d.exited() {
		return
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.wait(30 * time.Second)
}

func (d *daemon) log() string { return readLog(d.logPath) }

// waitReady polls the control address until it answers, the site
// started (its addresses all bound: see fetchStatus).
func (d *daemon) waitReady(ctl string) {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := fetchStatus(ctl)
		if err == nil {
			return
		}
		if d.exited() {
			d.t.Fatalf("duplex %s exited with status %d before it was ready:\n%s", d.role, d.code, logTail(d.log(), 4000))
		} else if time.Now().After(deadline) {
			d.t.Fatalf("duplex %s not ready on %s: %v\n%s", d.role, ctl, err, logTail(d.log(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fetchStatus(addr string) (control.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return fetchRunning(ctx, control.Endpoint{Addr: addr})
}

// fetchRunning reads a running site's status: one that starts (its state
// not read yet, its NBD address not bound, its status without volumes)
// is an error, as a site that does not answer is.
func fetchRunning(ctx context.Context, at control.Endpoint) (control.Status, error) {
	st, err := control.Fetch(ctx, at)
	if err == nil && st.Starting != nil {
		return st, fmt.Errorf("%s: starting since %s (waiting for %s for %.1fs)", at.Addr, st.Starting.Since, st.Starting.Step, st.Starting.StepSeconds)
	}
	return st, err
}

// eventually polls cond every 20ms until it holds, failing the test after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procSession is a session whose sites run as duplex processes.
type procSession struct {
	t    *testing.T
	dir  string
	path string // the session's config file
	cfg  *config.Config
	prim *daemon
	sec  *daemon
	// primNS and secNS are the network namespaces the sites run in ("":
	// the test's own).
	primNS, secNS string
	// primCPUs are the CPUs the primary runs on (taskset -c; "": any).
	primCPUs string
}

type sessionOpts struct {
	name    string      // session name; default "e2e-proc"
	volSize config.Size // per volume; default 64 MiB
	// token, if set, is the control token: newSession writes it into the
	// token file the config names.
	token string
	edit  func(c *config.Config)
	// primaryCPUs pins the primary daemon to these CPUs (taskset -c).
	primaryCPUs string
}

// newSession writes dir/duplex.toml: the demo's layout (2 subsystems × 2
// volumes, vol1..vol4) with free loopback ports and small volumes.
func newSession(t *testing.T, o sessionOpts) *procSession {
	t.Helper()
	if o.name == "" {
		o.name = "e2e-proc"
	}
	if o.volSize == 0 {
		o.volSize = 64 * config.MiB
	}
	dir := t.TempDir()
	c := config.Demo(dir)
	c.Session = o.name
	c.ControlTokenFile = ""
	// Reserved ports, not port 0: a daemon killed or stopped and started
	// again (restartPrimary, startPromote, rejoin) binds its addresses again.
	c.Primary.NBD, c.Primary.Control = testenv.FreeAddr(t), testenv.FreeAddr(t)
	listen := testenv.FreeAddr(t)
	c.Secondary.Listen, c.Primary.Secondary = listen, listen
	c.Secondary.Control, c.Secondary.NBD = testenv.FreeAddr(t), testenv.FreeAddr(t)
	c.Primary.SidefileLimit = 64 * config.MiB
	for i := range c.Primary.Subsystems {
		for j := range c.Primary.Subsystems[i].Volumes {
			c.Primary.Subsystems[i].Volumes[j].Size = o.volSize
		}
	}
	if o.token != "" {
		c.ControlTokenFile = filepath.Join(dir, "token")
		if err := os.WriteFile(c.ControlTokenFile, []byte(o.token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if o.edit != nil {
		o.edit(c)
	}
	if c.Primary.Secondary == listen && c.Secondary.Listen != listen {
		// The edit moved the secondary (to another host, say): the primary
		// dials it there, once it is bound if the system picks its port.
		c.Primary.Secondary = c.Secondary.Listen
		if strings.HasSuffix(c.Secondary.Listen, ":0") {
			c.Primary.Secondary = linkNotYetBound
		}
	}
	s := &procSession{t: t, dir: dir, path: filepath.Join(dir, "duplex.toml"), primCPUs: o.primaryCPUs}
	s.cfg = writeConfig(t, s.path, c)
	return s
}

// writeConfig encodes c into path and loads it back.
func writeConfig(t *testing.T, path string, c *config.Config) *config.Config {
	t.Helper()
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := config.Load(path)
	if err != nil {
		t.Fatalf("config written by Encode does not load: %v\n%s", err, text)
	}
	return loaded
}

func (s *procSession) startSecondary() {
	s.t.Helper()
	s.sec = startDaemonIn(s.t, s.secNS, "secondary", s.path, filepath.Join(s.dir, "secondary.log"))
	s.cfg = s.sec.ready(s.path, s.cfg)
}

func (s *procSession) startPrimary() {
	s.t.Helper()
	s.prim = startDaemonCPU(s.t, s.primNS, s.primCPUs, "primary", s.path, filepath.Join(s.dir, "primary.log"))
	s.cfg = s.prim.ready(s.path, s.cfg)
}

// waitPrimaryGone waits until the secondary sees the primary, killed,
// gone.
func (s *procSession) waitPrimaryGone() {
	s.t.Helper()
	eventually(s.t, 30*time.Second, "the secondary to see the primary gone", func() bool {
		return s.secondaryStatus().Link == "disconnected"
	})
}

// restartPrimary starts the primary daemon again, on the addresses it bound
// before, and waits until it serves.
func (s *procSession) restartPrimary() {
	s.t.Helper()
	s.prim = startDaemon(s.t, "primary", s.path, filepath.Join(s.dir, "primary.log"))
	s.prim.waitStarted()
	s.prim.waitReady(s.cfg.Primary.Control)
}

// writeAloneAndDie restarts the killed primary without its secondary,
// writes data at off of volume name through it, and kills it -9 again: a
// write the secondary never sees.
func (s *procSession) writeAloneAndDie(name string, data []byte, off int64) {
	s.t.Helper()
	s.restartPrimary()
	c := dialNBD(s.t, s.cfg.Primary.NBD, name)
	if err := c.WriteAt(data, off); err != nil {
		s.t.Fatal(err)
	}
	c.Close()
	s.prim.kill()
}

// recoverAndPromote fails over to the stopped secondary: duplex recover,
// then startPromote.
func (s *procSession) recoverAndPromote() *daemon {
	s.t.Helper()
	if code, out, errOut := runDuplex(s.t, "recover", "--config", s.path); code != 0 {
		s.t.Fatalf("recover exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	return s.startPromote()
}

// startPromote starts duplex promote at the secondary and waits until it
// serves.
func (s *procSession) startPromote() *daemon {
	s.t.Helper()
	d := startDaemon(s.t, "promote", s.path, filepath.Join(s.dir, "promote.log"))
	d.waitStarted()
	d.waitReady(s.cfg.Secondary.Control)
	return d
}

// linkNotYetBound stands for the secondary's link address until the
// secondary has bound it, where a session leaves its port to the system.
const linkNotYetBound = "127.0.0.1:1"

// ready waits until the daemon has started and answers on its control
// address. The listeners cfg leaves to the system (port 0) are written back
// into cfg and its file at path as the daemon reports it bound them, so that
// the commands, the other site and a restart find them; the new config is
// returned.
func (d *daemon) ready(path string, cfg *config.Config) *config.Config {
	d.t.Helper()
	bound := d.waitStarted()
	changed := false
	set := func(field *string, key string) {
		if strings.HasSuffix(*field, ":0") {
			changed = true
			if bound[key] == "" {
				d.t.Fatalf("duplex %s did not report its %s address:\n%s", d.role, key, logTail(d.log(), 4000))
			}
			*field = bound[key]
		}
	}
	c := *cfg
	ctl := &c.Primary.Control
	if d.role == "secondary" {
		set(&c.Secondary.Listen, "listen")
		set(&c.Secondary.NBD, "nbd")
		set(&c.Secondary.Control, "control")
		if c.HasPrimary() && c.Primary.Secondary == linkNotYetBound {
			c.Primary.Secondary, changed = c.Secondary.Listen, true
		}
		ctl = &c.Secondary.Control
	} else {
		set(&c.Primary.NBD, "nbd")
		set(&c.Primary.Control, "control")
	}
	if changed {
		cfg = writeConfig(d.t, path, &c)
	}
	d.waitReady(*ctl)
	return cfg
}

// waitStarted waits for this run's "ROLE started" log line and returns its
// fields (for example listen, nbd and control: the addresses bound).
func (d *daemon) waitStarted() map[string]string {
	d.t.Helper()
	want := fmt.Sprintf("msg=%q", d.role+" started")
	deadline := time.Now().Add(30 * time.Second)
	for {
		text := d.log()
		if i := strings.LastIndex(text, "\n=== "); i >= 0 {
			text = text[i:]
		}
		for _, line := range strings.Split(text, "\n") {
			if !strings.Contains(line, want) {
				continue
			}
			fields := map[string]string{}
			for _, f := range strings.Fields(line) {
				if k, v, ok := strings.Cut(f, "="); ok {
					fields[k] = v
				}
			}
			return fields
		}
		if d.exited() {
			d.t.Fatalf("duplex %s exited with status %d before it started:\n%s", d.role, d.code, logTail(d.log(), 4000))
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("duplex %s did not start within 30s:\n%s", d.role, logTail(d.log(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// start starts both sites and waits until they are linked.
func (s *procSession) start() {
	s.t.Helper()
	s.startSecondary()
	s.startPrimary()
	s.waitLinked()
}

func (s *procSession) primaryStatus() control.Status {
	s.t.Helper()
	st, err := fetchStatus(s.cfg.Primary.Control)
	if err != nil {
		s.t.Fatal(err)
	}
	return st
}

func (s *procSession) secondaryStatus() control.Status {
	s.t.Helper()
	st, err := fetchStatus(s.cfg.Secondary.Control)
	if err != nil {
		s.t.Fatal(err)
	}
	return st
}

// waitLinked waits until both sites report the link connected and every
// pair is duplex (its initial copy, or the full copy after an unclean stop,
// done): only then is the secondary a consistent copy of the primary.
func (s *procSession) waitLinked() {
	s.t.Helper()
	eventually(s.t, 60*time.Second, "both sites linked and every pair duplex", func() bool {
		ps := s.primaryStatus()
		if ps.Link != "connected" || s.secondaryStatus().Link != "connected" || len(ps.Volumes) == 0 {
			return false
		}
		for _, v := range ps.Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		return true
	})
}

// waitCopyUnmarked waits, the primary running, until its activity log on
// disk marks no region. The initial copy marks each region it copies, and
// the pair manager unmarks them only once their updates are acknowledged
// and the volumes flushed, at a sweep after the pairs are duplex: a kill
// -9 before that leaves the whole volumes marked, and the restart copies
// them again, as after any crash. A test that bounds what a crash leaves
// to copy by the regions its clients wrote waits for this first.
func (s *procSession) waitCopyUnmarked() {
	s.t.Helper()
	path := filepath.Join(site.PairStateDir(s.cfg), "activity.log")
	start, first := time.Now(), int64(-1)
	eventually(s.t, 30*time.Second, "the primary's activity log to mark no region once the initial copy is done", func() bool {
		marks, err := actlog.ReadMarks(nil, path)
		if err != nil {
			return false
		}
		var n int64
		for _, rs := range marks {
			for _, r := range rs {
				n += r[1]
			}
		}
		if first < 0 {
			first = n
		}
		return n == 0
	})
	if first > 0 {
		s.t.Logf("the initial copy left %d bytes marked in the primary's activity log once duplex, unmarked %s later",
			first, time.Since(start).Round(time.Millisecond))
	}
}

func consistencyTime(t *testing.T, st control.Status) time.Time {
	t.Helper()
	if st.ConsistencyTime == "" {
		return time.Time{}
	}
	ct, err := time.Parse(time.RFC3339Nano, st.ConsistencyTime)
	if err != nil {
		t.Fatalf("consistency_time %q is not RFC 3339: %v", st.ConsistencyTime, err)
	}
	return ct
}

// waitConsistentAfter waits, with the primary running, until the secondary is
// consistent as of a moment after ts: every write acknowledged before ts is
// applied there. That holds while the primary's stamps follow the test's
// clock; after a kill -9 the restarted primary's stamps, and the consistency
// time, may lead it (by up to the timer's lease), so there a check is
// ordered after a write issued since instead (see waitBarrier).
func (s *procSession) waitConsistentAfter(ts time.Time) {
	s.t.Helper()
	var last control.Status
	deadline := time.Now().Add(60 * time.Second)
	for {
		last = s.secondaryStatus()
		if consistencyTime(s.t, last).After(ts) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("secondary not consistent as of %s within 60s: status %+v", ts.UTC().Format(time.RFC3339Nano), last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// drainPrimary stops the primary with SIGTERM, which must ship everything it
// holds and exit 0, then waits until the secondary has settled: link down,
// groups_applied and consistency_time unchanged across polls.
func (s *procSession) drainPrimary() {
	s.t.Helper()
	if code := s.prim.stop(); code != 0 {
		s.t.Fatalf("primary exited %d after SIGTERM, want 0 (it ships everything, then exits)", code)
	}
	if !strings.Contains(s.prim.log(), "everything shipped to the secondary") {
		s.t.Errorf("primary log does not say everything was shipped:\n%s", logTail(s.prim.log(), 3000))
	}
	s.waitSecondarySettled()
}

func (s *procSession) waitSecondarySettled() {
	s.t.Helper()
	var prev control.Status
	stable := 0
	eventually(s.t, 30*time.Second, "the secondary to settle", func() bool {
		st := s.secondaryStatus()
		if st.Link == "disconnected" && st.ConsistencyTime == prev.ConsistencyTime &&
			st.GroupsApplied != nil && prev.GroupsApplied != nil && *st.GroupsApplied == *prev.GroupsApplied {
			stable++
		} else {
			stable = 0
		}
		prev = st
		return stable >= 3
	})
}

// stopSecondary stops the secondary with SIGTERM; it must exit 0.
func (s *procSession) stopSecondary() {
	s.t.Helper()
	if code := s.sec.stop(); code != 0 {
		s.t.Fatalf("secondary exited %d after SIGTERM, want 0", code)
	}
}

func (s *procSession) volumePaths(name string) (prim, sec string) {
	s.t.Helper()
	pv, _, ok := s.cfg.PrimaryVolume(name)
	sv, ok2 := s.cfg.SecondaryVolume(name)
	if !ok || !ok2 {
		s.t.Fatalf("no volume %q in the session", name)
	}
	return pv.Path, sv.Path
}

// assertImagesEqual compares the sha256 of every primary image with its
// secondary copy. Both sites must be stopped.
func (s *procSession) assertImagesEqual() {
	s.t.Helper()
	for _, name := range s.cfg.VolumeNames() {
		p, q := s.volumePaths(name)
		hp, hq := testenv.SHA256File(s.t, p), testenv.SHA256File(s.t, q)
		if hp != hq {
			s.t.Errorf("volume %s: secondary image sha256 %x differs from the primary's %x", name, hq, hp)
		}
	}
}

func dialNBD(t *testing.T, addr, name string) *nbd.Client {
	t.Helper()
	c, err := nbd.Dial(addr, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialAll opens one connection to each export of names at addr, closed at
// the end of the test if not before.
func dialAll(t *testing.T, addr string, names []string) []*nbd.Client {
	t.Helper()
	var cs []*nbd.Client
	for _, n := range names {
		cs = append(cs, dialNBD(t, addr, n))
	}
	return cs
}

// runDuplex runs a one-shot duplex command and returns its exit code, stdout
// and stderr.
func runDuplex(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, duplexBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("duplex %s did not finish within a minute", strings.Join(args, " "))
	}
	return exitCode(err), stdout.String(), stderr.String()
}

// waitLogLine waits until a daemon's log holds a line containing every one of
// parts, and returns it.
func waitLogLine(t *testing.T, d *daemon, timeout time.Duration, parts ...string) string {
	t.Helper()
	var found string
	deadline := time.Now().Add(timeout)
	for found == "" {
		for _, line := range strings.Split(d.log(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				found = line
				break
			}
		}
		if found != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q in the %s log within %s:\n%s", parts, d.role, timeout, logTail(d.log(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return found
}

// TestDaemonsStatusJSON checks `duplex status --config F --json` against the
// contract: an array of the primary's and the secondary's objects, with
// every field scripts may rely on.
func TestDaemonsStatusJSON(t *testing.T) {
	t.Parallel()
	s := newSession(t, sessionOpts{})
	s.start()
	c := dialNBD(t, s.cfg.Primary.NBD, "vol3")
	if err := c.WriteAt(bytes.Repeat([]byte{0x5a}, 8192), 0); err != nil {
		t.Fatal(err)
	}
	wrote := time.Now()
	s.waitConsistentAfter(wrote)
	eventually(t, 30*time.Second, "the primary to learn the secondary's consistency time", func() bool {
		return consistencyTime(t, s.primaryStatus()).After(wrote)
	})

	code, out, errOut := runDuplex(t, "status", "--config", s.path, "--json")
	if code != 0 {
		t.Fatalf("duplex status exited %d: %s", code, errOut)
	}
	var sites []map[string]any
	if err := json.Unmarshal([]byte(out), &sites); err != nil {
		t.Fatalf("status --json is not a JSON array of objects: %v\n%s", err, out)
	}
	if len(sites) != 2 {
		t.Fatalf("status --json has %d objects, want 2 (primary, secondary):\n%s", len(sites), out)
	}
	common := []string{"session", "role", "consistency_time", "lag_seconds", "link", "volumes"}
	perRole := map[string][]string{
		"primary":   {"sidefile_bytes", "sidefile_limit_bytes"},
		"secondary": {"groups_applied", "journal_bytes"},
	}
	for i, role := range []string{"primary", "secondary"} {
		site := sites[i]
		for _, k := range append(common, perRole[role]...) {
			if _, ok := site[k]; !ok {
				t.Errorf("%s status has no %q:\n%s", role, k, out)
			}
		}
		if site["role"] != role {
			t.Errorf("object %d: role %v, want %q", i, site["role"], role)
		}
		if site["session"] != s.cfg.Session {
			t.Errorf("%s: session %v, want %q", role, site["session"], s.cfg.Session)
		}
		if site["link"] != "connected" {
			t.Errorf("%s: link %v, want connected", role, site["link"])
		}
		ct, _ := site["consistency_time"].(string)
		if ts, err := time.Parse(time.RFC3339Nano, ct); err != nil || !ts.After(wrote) {
			t.Errorf("%s: consistency_time %q: want RFC 3339 after the write at %s (%v)", role, ct, wrote.UTC().Format(time.RFC3339Nano), err)
		}
		if lag, ok := site["lag_seconds"].(float64); !ok || lag < 0 || lag > 30 {
			t.Errorf("%s: lag_seconds %v", role, site["lag_seconds"])
		}
		other := "secondary"
		if role == "secondary" {
			other = "primary"
		}
		for _, k := range perRole[other] {
			if _, ok := site[k]; ok {
				t.Errorf("%s status has the %s field %q", role, other, k)
			}
		}
		vols, _ := site["volumes"].([]any)
		if len(vols) != 4 {
			t.Fatalf("%s: %d volumes, want 4:\n%s", role, len(vols), out)
		}
		for j, v := range vols {
			vm, _ := v.(map[string]any)
			for _, k := range []string{"name", "subsystem", "state", "size_bytes", "copied_bytes"} {
				if _, ok := vm[k]; !ok {
					t.Errorf("%s volume %d has no %q", role, j, k)
				}
			}
			name := fmt.Sprintf("vol%d", j+1)
			_, ss, _ := s.cfg.PrimaryVolume(name)
			if vm["name"] != name || vm["subsystem"] != ss || vm["state"] != "duplex" ||
				vm["size_bytes"] != float64(64<<20) || vm["copied_bytes"] != float64(64<<20) {
				t.Errorf("%s volume %d: %v, want %s of %s, duplex, 64 MiB copied", role, j, vm, name, ss)
			}
		}
	}
	if lim, _ := sites[0]["sidefile_limit_bytes"].(float64); lim != 2*64<<20 {
		t.Errorf("primary sidefile_limit_bytes %v, want %d (64 MiB for each of 2 subsystems)", sites[0]["sidefile_limit_bytes"], 2*64<<20)
	}
	if g, _ := sites[1]["groups_applied"].(float64); g < 1 {
		t.Errorf("secondary groups_applied %v after a replicated write", sites[1]["groups_applied"])
	}
}

// TestDaemonsSIGTERMShipsEverything: SIGTERM on the primary while a writer is
// writing makes it exit 0 after shipping, and the secondary, with the primary
// gone, then holds the last acknowledged write (and every one before it).
func TestDaemonsSIGTERMShipsEverything(t *testing.T) {
	t.Parallel()
	s := newSession(t, sessionOpts{})
	s.start()
	c := dialNBD(t, s.cfg.Primary.NBD, "vol2")
	const blocks = 2048 // 8 MiB, wrapping
	block := func(n uint64) []byte {
		b := make([]byte, 4096)
		for i := 0; i < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], n*0x9e3779b97f4a7c15^uint64(i))
		}
		binary.BigEndian.PutUint64(b, n)
		return b
	}
	var acked atomic.Uint64
	done := make(chan error, 1)
	go func() {
		for n := uint64(1); ; n++ {
			if err := c.WriteAt(block(n), int64((n-1)%blocks)*4096); err != nil {
				done <- err
				return
			}
			acked.Store(n)
		}
	}()
	eventually(t, 30*time.Second, "writes to be acknowledged", func() bool { return acked.Load() >= 200 })
	if err := s.prim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := s.prim.wait(time.Minute); code != 0 {
		t.Fatalf("primary exited %d after SIGTERM, want 0", code)
	}
	werr := <-done // the primary closed the connection
	last := acked.Load()
	t.Logf("writer stopped after %d acknowledged writes: %v", last, werr)
	if !strings.Contains(s.prim.log(), "everything shipped to the secondary") {
		t.Errorf("primary log does not say everything was shipped")
	}
	s.waitSecondarySettled()

	// Every block holds the newest acknowledged write to it, or (only for
	// the one write in flight when the primary stopped) the next one.
	r := dialNBD(t, s.cfg.Secondary.NBD, "vol2")
	if !r.ReadOnly() {
		t.Error("secondary export is not read-only")
	}
	img := make([]byte, blocks*4096)
	if err := r.ReadAt(img, 0); err != nil {
		t.Fatal(err)
	}
	for b := uint64(0); b < blocks; b++ {
		got := img[b*4096 : (b+1)*4096]
		want := make([]byte, 4096) // never written
		var n uint64               // the newest acknowledged write to block b
		if b+1 <= last {
			n = b + 1 + (last-(b+1))/blocks*blocks
			want = block(n)
		}
		if bytes.Equal(got, want) {
			continue
		}
		// The write in flight when the primary stopped may have been
		// captured, and so shipped, though its reply was lost.
		if last%blocks == b && bytes.Equal(got, block(last+1)) {
			continue
		}
		t.Fatalf("secondary block %d holds write %d, want write %d (last acknowledged: %d)", b, binary.BigEndian.Uint64(got), n, last)
	}
	s.stopSecondary()
}

// TestDaemonsOtherSessionRefused: a primary of another session is refused by
// the secondary, with a clear log line, and never linked.
func TestDaemonsOtherSessionRefused(t *testing.T) {
	t.Parallel()
	s := newSession(t, sessionOpts{})
	s.startSecondary()

	odir := t.TempDir()
	oc := config.Demo(odir)
	oc.Session = "another-session"
	oc.ControlTokenFile = ""
	oc.Primary.NBD, oc.Primary.Control = testenv.FreeAddr(t), testenv.FreeAddr(t)
	oc.Primary.Secondary = s.cfg.Secondary.Listen
	oc.Primary.SidefileLimit = 8 * config.MiB
	for i := range oc.Primary.Subsystems {
		for j := range oc.Primary.Subsystems[i].Volumes {
			oc.Primary.Subsystems[i].Volumes[j].Size = 4 * config.MiB
		}
	}
	oc.Secondary = config.Secondary{} // this file describes its primary only
	opath := filepath.Join(odir, "other.toml")
	ocfg := writeConfig(t, opath, oc)
	other := startDaemon(t, "primary", opath, filepath.Join(odir, "primary.log"))
	ocfg = other.ready(opath, ocfg)

	line := waitLogLine(t, s.sec, 30*time.Second, "refusing primary", "another-session")
	t.Logf("secondary: %s", line)
	if !strings.Contains(line, "is not this secondary's session") {
		t.Errorf("the refusal does not say why: %s", line)
	}
	// It keeps refusing: never linked while the other primary retries.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if st := s.secondaryStatus(); st.Link != "disconnected" {
			t.Fatalf("secondary link %q with another session's primary", st.Link)
		}
		if st, err := fetchStatus(ocfg.Primary.Control); err == nil && st.Link == "connected" {
			t.Fatal("another session's primary reports link connected")
		}
	}
	waitLogLine(t, other, 10*time.Second, "refused the session")
	// It could never ship its initial copy: SIGTERM would wait for the
	// drain timeout.
	other.kill()
	s.stopSecondary()
}

// TestDaemonsRecover: recover refuses while a primary is connected, and after
// both sites are stopped it applies the journal and says how consistent the
// volumes are.
func TestDaemonsRecover(t *testing.T) {
	t.Parallel()
	s := newSession(t, sessionOpts{})
	s.start()
	c := dialNBD(t, s.cfg.Primary.NBD, "vol4")
	issued := time.Now()
	if err := c.WriteAt(bytes.Repeat([]byte{0xe7}, 64<<10), 1<<20); err != nil {
		t.Fatal(err)
	}
	s.waitConsistentAfter(time.Now())

	code, out, errOut := runDuplex(t, "recover", "--config", s.path)
	if code != 1 {
		t.Fatalf("recover with the primary connected exited %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "connected") {
		t.Errorf("recover with the primary connected: message does not say a primary is connected: %q", errOut)
	}
	t.Logf("recover while connected: %s", strings.TrimSpace(errOut))

	s.drainPrimary()
	s.stopSecondary()
	code, out, errOut = runDuplex(t, "recover", "--config", s.path)
	if code != 0 {
		t.Fatalf("recover after stopping both sites exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	i := strings.Index(out, "consistent as of ")
	if i < 0 {
		t.Fatalf("recover does not print \"consistent as of\":\n%s", out)
	}
	ts, _, _ := strings.Cut(out[i+len("consistent as of "):], " ")
	ct, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(ts))
	if err != nil {
		t.Fatalf("recover: consistency time %q: %v\n%s", ts, err, out)
	}
	if ct.Before(issued) {
		t.Errorf("recover: consistent as of %s, before the write issued at %s", ct, issued.UTC().Format(time.RFC3339Nano))
	}
	t.Logf("recover:\n%s", out)
	// The recovered volume holds the write.
	_, sp := s.volumePaths("vol4")
	f, err := os.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, 64<<10)
	if _, err := f.ReadAt(got, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{0xe7}, 64<<10)) {
		t.Error("recovered secondary volume does not hold the write")
	}
}
