package e2e

import (
	"bufio"
	"bytes"
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

	"duplex/internal/testenv"
	"duplex/workload"
)

// A dependent-write client that is not ours: testdata/depwrite.py writes the
// workload block format through libnbd, the NBD client library of the
// NetworkBlockDevice project, so a check passes only if the NBD server serves
// a client it was not written with, and the workload checker reads what that
// client wrote.

// libnbdPython is the interpreter Debian's python3-libnbd installs the
// bindings for; a python3 earlier on PATH (a virtual environment, pyenv) does
// not see them.
const libnbdPython = "/usr/bin/python3"

func needLibnbdPython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(libnbdPython); err != nil {
		testenv.Missing(t, "%s not found: apt-get install python3-libnbd", libnbdPython)
	}
	// -I leaves the working directory off the module path: the package
	// directory of a test holds the Go package nbd, which Python would
	// import in place of libnbd's.
	if out, err := exec.Command(libnbdPython, "-I", "-c", "import nbd").CombinedOutput(); err != nil {
		testenv.Missing(t, "libnbd's Python bindings not found (%v: %s): apt-get install python3-libnbd", err, bytes.TrimSpace(out))
	}
}

// TestLibnbdClientBlockFormat checks that the libnbd client's blocks are
// those workload.Encode makes, byte for byte.
func TestLibnbdClientBlockFormat(t *testing.T) {
	needLibnbdPython(t)
	b := workload.Block{Ref: workload.Ref{Client: 3, Counter: 1<<40 + 7, Volume: 2, Block: 77},
		Deps: [2]workload.Ref{{Client: 1, Counter: 5, Volume: 0, Block: 9}, {Client: 3, Counter: 1<<40 + 6, Volume: 1, Block: 70}}}
	ref := func(r workload.Ref) string {
		return fmt.Sprintf("(%d, %d, %d, %d)", r.Client, r.Counter, r.Volume, r.Block)
	}
	// -B: no __pycache__ beside the script.
	cmd := exec.Command(libnbdPython, "-I", "-B", "-c", fmt.Sprintf(
		"import sys; sys.path.insert(0, 'testdata'); import depwrite; sys.stdout.buffer.write(depwrite.encode(%s, (%s, %s)))",
		ref(b.Ref), ref(b.Deps[0]), ref(b.Deps[1])))
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("depwrite.encode: %v", err)
	}
	want := make([]byte, workload.BlockSize)
	workload.Encode(want, b)
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("depwrite.encode made %d bytes, first differing from workload.Encode at byte %d", len(got), i)
	}
}

// libnbdLoad is a run of testdata/depwrite.py.
type libnbdLoad struct {
	cmd   *exec.Cmd
	lines chan string // its standard output
	done  chan struct{}
	err   error // of the process, once done
	once  sync.Once
	// last is the final line of its output: the acknowledged writes.
	last   string
	stderr bytes.Buffer
	// acked is the acknowledged writes as it last reported them while it
	// runs.
	acked atomic.Int64
}

// startLibnbdLoad starts the libnbd client writing l over the exports and
// returns once each of its clients is connected.
func startLibnbdLoad(t *testing.T, addr string, exports []string, l workload.Layout, seed uint64) *libnbdLoad {
	t.Helper()
	needLibnbdPython(t)
	if l.FirstClient != 0 {
		t.Fatal("the libnbd client numbers its clients from 1")
	}
	script, err := filepath.Abs(filepath.Join("testdata", "depwrite.py"))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-I", "-B", script, addr}, exports...)
	args = append(args, "--clients", strconv.Itoa(l.Clients), "--blocks", strconv.Itoa(l.BlocksPerVolume),
		"--seed", strconv.FormatUint(seed, 10))
	ld := &libnbdLoad{cmd: exec.Command(libnbdPython, args...), lines: make(chan string, 1), done: make(chan struct{})}
	ld.cmd.Stderr = &ld.stderr
	out, err := ld.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ld.cmd.Start(); err != nil {
		t.Fatalf("start the libnbd client: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			ld.last = sc.Text()
			if n, ok := strings.CutPrefix(ld.last, "acked "); ok {
				if v, err := strconv.ParseInt(n, 10, 64); err == nil {
					ld.acked.Store(v)
				}
				continue
			}
			select {
			case ld.lines <- sc.Text():
			default:
			}
		}
		ld.err = ld.cmd.Wait()
		close(ld.done)
	}()
	t.Cleanup(ld.abort)
	select {
	case line := <-ld.lines:
		if line != "ready" {
			t.Fatalf("the libnbd client said %q, not ready", line)
		}
	case <-ld.done:
		t.Fatalf("the libnbd client exited before it was ready: %v\n%s", ld.err, ld.stderr.String())
	case <-time.After(time.Minute):
		ld.abort()
		t.Fatalf("the libnbd client was not connected in a minute\n%s", ld.stderr.String())
	}
	return ld
}

// stop asks the client to end after the writes in flight and returns how many
// it saw acknowledged and the first write that failed, if one did.
func (l *libnbdLoad) stop() (int64, error) {
	l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.done:
	case <-time.After(30 * time.Second):
		l.abort()
		return 0, fmt.Errorf("the libnbd client did not stop in 30s after SIGTERM: a write waits for its reply\n%s", l.stderr.String())
	}
	n, err := strconv.ParseInt(l.last, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("the libnbd client's count of acknowledged writes: %w (exit %v)\n%s", err, l.err, l.stderr.String())
	}
	if l.err != nil {
		return n, fmt.Errorf("libnbd client: %w: %s", l.err, strings.TrimSpace(l.stderr.String()))
	}
	return n, nil
}

func (l *libnbdLoad) abort() {
	l.once.Do(func() {
		l.cmd.Process.Kill()
		<-l.done
	})
}
