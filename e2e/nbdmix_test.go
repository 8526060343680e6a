package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mixRun is testdata/nbdmix.py running against the primary: libnbd's
// client with overlapping writes, zeroes, trims and flushes in flight.
type mixRun struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string
	out   bytes.Buffer // stderr
	done  chan error
}

func startMix(t *testing.T, args ...string) *mixRun {
	t.Helper()
	// -I: the package directory holds the Go package nbd, which Python
	// would import in place of libnbd's; -B: no __pycache__ beside it.
	m := &mixRun{t: t, lines: make(chan string, 1024), done: make(chan error, 1)}
	m.cmd = exec.Command(libnbdPython, append([]string{"-I", "-B", "testdata/nbdmix.py"}, args...)...)
	m.cmd.Stderr = &m.out
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if m.cmd.ProcessState == nil {
			m.cmd.Process.Kill()
			<-m.done
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			m.lines <- sc.Text()
		}
		close(m.lines)
		io.Copy(io.Discard, stdout)
		m.done <- m.cmd.Wait()
	}()
	return m
}

// await waits for the line want; the run must not end before it.
func (m *mixRun) await(want string, within time.Duration) {
	m.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case l, ok := <-m.lines:
			if !ok {
				err := <-m.done
				m.done <- err
				m.t.Fatalf("nbdmix.py ended (%v) before it said %q:\n%s", err, want, m.out.String())
			}
			if l == want {
				return
			}
		case <-deadline:
			m.t.Fatalf("nbdmix.py did not say %q within %s:\n%s", want, within, m.out.String())
		}
	}
}

// wait waits for the run to end and returns how it ended.
func (m *mixRun) wait() error {
	for range m.lines {
	}
	return <-m.done
}

// TestLibnbdOverlappingMixKilled drives the primary with libnbd's client:
// writes, WRITE_ZEROES (with and without NO_HOLE), TRIMs and FLUSHes that
// overlap one another in flight, 32 at a time over three connections (two on
// one export, one on a volume of the other subsystem), some with FUA, at
// unaligned offsets and lengths, across a boundary of the activity log's
// regions. The primary is killed -9 at once after the last reply, and again
// later in the middle of such a run, after its regions had gone idle and been
// unmarked. After each restart and a final drain, every secondary image is
// byte-identical to its primary, and the range the first run left holds on
// both sites what the client read back from it: nothing acknowledged was
// lost, and zeroes and trims went to the secondary in the order of the
// writes they overlap.
func TestLibnbdOverlappingMixKilled(t *testing.T) {
	t.Parallel()
	needLibnbdPython(t)
	const volSize = 16 << 20
	s := newSession(t, sessionOpts{name: "e2e-nbdmix", volSize: volSize})
	s.start()
	uris := func(names ...string) []string {
		var us []string
		for _, n := range names {
			us = append(us, nbdURI(s.cfg.Primary.NBD, n))
		}
		return us
	}

	// Across the 1 MiB boundary of the log's regions.
	const start, span = 1<<20 - 384<<10, 768 << 10
	final := filepath.Join(t.TempDir(), "final")
	m := startMix(t, append(uris("vol1", "vol1", "vol3"), "--start", fmt.Sprint(start), "--span", fmt.Sprint(span),
		"--rounds", "30", "--depth", "32", "--seed", "1", "--final", final)...)
	if err := m.wait(); err != nil {
		t.Fatalf("nbdmix.py: %v\n%s", err, m.out.String())
	}
	s.prim.kill()
	want, err := os.ReadFile(final)
	if err != nil || len(want) != span {
		t.Fatalf("what the client read back: %d bytes (%v), want %d", len(want), err, span)
	}
	primPath, secPath := s.volumePaths("vol1")
	checkRange := func(site, path string) {
		t.Helper()
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got := make([]byte, span)
		if _, err := f.ReadAt(got, start); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, want); i >= 0 {
			t.Errorf("%s vol1 at %d: %q, the client read back %q", site, start+i, snippet(got, i), snippet(want, i))
		}
	}
	checkRange("the killed primary's", primPath)

	s.startPrimary()
	s.waitLinked()
	// The regions idle and unmarked, a run of the same kind near the end
	// of the volumes is killed in its middle.
	s.waitCopyUnmarked()
	m = startMix(t, append(uris("vol3", "vol3", "vol2"), "--start", fmt.Sprint(volSize-512<<10), "--span", fmt.Sprint(512<<10),
		"--rounds", "1000", "--depth", "32", "--seed", "2")...)
	m.await("acked 3", 2*time.Minute)
	s.prim.kill()
	m.wait()

	s.startPrimary()
	s.waitLinked()
	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()
	checkRange("the secondary's", secPath)
	checkRange("the primary's", primPath)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// snippet is up to 24 bytes of b from i, for a message.
func snippet(b []byte, i int) string {
	return strings.ToValidUTF8(string(b[i:min(len(b), i+24)]), "?")
}
