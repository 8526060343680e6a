package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"duplex/control"
	"duplex/timer"
)

// Daemon is one duplex site (or any other server) running as a child process.
type Daemon struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	log     *os.File
	done    chan struct{}
	waitErr error
}

// Start runs bin with args, stdout and stderr appended to logPath.
func Start(name, logPath, bin string, args ...string) (*Daemon, error) {
	return start(name, logPath, bin, nil, args...)
}

// start is Start with variables added to the environment.
func start(name, logPath, bin string, env []string, args ...string) (*Daemon, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(lf, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &Daemon{Name: name, LogPath: logPath, cmd: cmd, log: lf, done: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		lf.Close()
		close(d.done)
	}()
	return d, nil
}

// StartSite runs `duplex ROLE --config CFG` with the given extra flags; the
// primary of a session made with Spec.ClockStep reads its clock's offset from
// Session.ClockFile.
func StartSite(bin, role string, s *Session, logPath string, flags ...string) (*Daemon, error) {
	var env []string
	if role == "primary" && s.ClockFile != "" {
		env = []string{timer.StepFileEnv + "=" + s.ClockFile}
	}
	return start(role, logPath, bin, env, append([]string{role, "--config", s.ConfigPath}, flags...)...)
}

// Pid is the process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Done is closed when the process has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Exited reports whether the process has exited.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit status once exited: 128+signal when killed by one.
func (d *Daemon) ExitCode() int {
	<-d.done
	if d.waitErr == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(d.waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// Kill sends SIGKILL and waits for the exit: a crash, nothing flushed.
func (d *Daemon) Kill() {
	if !d.Exited() {
		d.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-d.done
}

// Freeze stops the process with SIGSTOP: a write it was making completes,
// and it makes no further one, so its files can be read as they will be
// after a Kill. The signal is delivered asynchronously, so Freeze waits (up
// to 5s, where /proc shows it) until every thread of the process is stopped.
func (d *Daemon) Freeze() error {
	if d.Exited() {
		return fmt.Errorf("%s has exited", d.Name)
	}
	if err := d.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		stopped, err := allStopped(d.Pid())
		if err != nil || stopped {
			return nil // no /proc: the signal is all there is to wait on
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not stopped 5s after SIGSTOP", d.Name)
		}
		time.Sleep(time.Millisecond)
	}
}

// Thaw lets a frozen process run again (SIGCONT): a host that stalled and
// came back, with its sockets and files as it left them.
func (d *Daemon) Thaw() error {
	if d.Exited() {
		return fmt.Errorf("%s has exited", d.Name)
	}
	return d.cmd.Process.Signal(syscall.SIGCONT)
}

// allStopped reports whether every thread of process pid is in the stopped
// state, as /proc/PID/task/TID/stat shows it.
func allStopped(pid int) (bool, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited
		}
		if err != nil {
			return false, err
		}
		// "tid (comm) S ...": comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return false, fmt.Errorf("/proc/%d/task/%s/stat: unexpected %q", pid, t.Name(), b)
		}
		if st := b[i+2]; st != 'T' && st != 't' {
			return false, nil
		}
	}
	return true, nil
}

// Stop sends SIGTERM and waits up to timeout for a clean exit, then kills.
// It returns the exit code (128+9 when it had to kill).
func (d *Daemon) Stop(timeout time.Duration) int {
	if !d.Exited() {
		d.cmd.Process.Signal(syscall.SIGTERM)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-d.done:
	case <-t.C:
		d.Kill()
	}
	return d.ExitCode()
}

// LogTail returns the last n bytes of the log.
func (d *Daemon) LogTail(n int) string {
	b, _ := os.ReadFile(d.LogPath)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// WaitStatus polls a control address until the site runs (its status no
// longer says it starts: its addresses are all bound then) and cond holds,
// the process dies or ctx ends; it returns the last status read.
func WaitStatus(ctx context.Context, d *Daemon, addr string, cond func(control.Status) bool) (control.Status, error) {
	var last control.Status
	var lastErr error
	for {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := control.Fetch(fctx, control.Endpoint{Addr: addr})
		cancel()
		if err == nil {
			last = st
			if st.Starting == nil && cond(st) {
				return st, nil
			}
		}
		lastErr = err
		if d != nil && d.Exited() {
			return last, fmt.Errorf("%s exited with %d while waiting: %s", d.Name, d.ExitCode(), d.LogTail(2000))
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("%w waiting for %s (last error: %v)", ErrTimeout, addr, lastErr)
			}
			return last, fmt.Errorf("%w waiting for %s", ErrTimeout, addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// FetchRunning reads a running site's status: one that starts (its
// state not read yet, its status without volumes, its NBD address not
// bound) is an error, as a site that does not answer is.
func FetchRunning(ctx context.Context, at control.Endpoint) (control.Status, error) {
	st, err := control.Fetch(ctx, at)
	if err == nil && st.Starting != nil {
		return st, fmt.Errorf("%s: starting since %s (waiting for %s)", at.Addr, st.Starting.Since, st.Starting.Step)
	}
	return st, err
}

// Connected holds when a site reports its link connected.
func Connected(st control.Status) bool { return st.Link == "connected" }

// ProcMem returns the peak (VmHWM) and current (VmRSS) resident set size of a
// process, in bytes, from /proc/PID/status.
func ProcMem(pid int) (peak, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmHWM:":
			peak = kb << 10
		case "VmRSS:":
			rss = kb << 10
		}
	}
	if peak == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
	}
	return peak, rss, nil
}

// clockTicks is USER_HZ, the unit of the times in /proc/PID/stat. It is 100
// on every Linux architecture Go supports, and not readable without cgo.
const clockTicks = 100

// ProcCPU returns the user+system CPU time a running process has used, from
// /proc/PID/stat.
func ProcCPU(pid int) (time.Duration, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// ProcFaults returns the minor page faults a running process has taken, from
// /proc/PID/stat: the pages it was given afresh, those populated by
// madvise(MADV_POPULATE_WRITE) included, which perf's page-faults event
// does not count.
func ProcFaults(pid int) (int64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(f[7], 10, 64)
}

// procStat returns the fields of /proc/PID/stat after the command name
// (field 2), which may hold spaces: the fields after its closing
// parenthesis are fixed, minflt the 10th, utime the 14th, stime the 15th.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return f, nil
}
