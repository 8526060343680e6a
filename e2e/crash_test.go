package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/bench/harness"
	"duplex/internal/testenv"
	"duplex/secondary"
	"duplex/transport"
	"duplex/workload"
)

// secondaryProcess is the secondary site running as a real process: the test
// binary re-executed (see TestMain).
type secondaryProcess struct {
	t    *testing.T
	dir  string
	addr string
	cmd  *exec.Cmd
}

func (p *secondaryProcess) start() {
	p.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DUPLEX_E2E_ROLE=secondary", "DUPLEX_E2E_DIR="+p.dir, "DUPLEX_E2E_ADDR="+p.addr,
		"DUPLEX_E2E_BLOCKS="+strconv.Itoa(layout.BlocksPerVolume))
	cmd.Stderr = os.Stderr
	harness.DieWithParent(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if err != nil || !ok {
		cmd.Process.Kill()
		cmd.Wait()
		p.t.Fatalf("secondary process did not start: %q %v", line, err)
	}
	// Restarts bind the same reserved address, so that the primary finds the
	// secondary where it was.
	p.addr = addr
	p.cmd = cmd
}

func (p *secondaryProcess) kill() {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	p.cmd.Wait()
	p.cmd = nil
}

// recoverAndCheck opens the secondary's files in this process as a restart
// would, which replays the journal, and checks the dependent-write invariant.
func recoverAndCheck(t *testing.T, dir string) secondary.Stats {
	t.Helper()
	list, vols, subs := openSecondaryVolumes(t, dir, layout.Volumes, layout.BlocksPerVolume)
	defer func() {
		for _, v := range list {
			v.Close()
		}
	}()
	sec, err := secondary.Open(secondaryConfig(dir, vols, subs))
	if err != nil {
		t.Fatalf("recovery: %v", err)
	}
	defer sec.Close()
	vs, err := workload.Check(layout, func(v int, b []byte, off int64) error { return list[v].ReadAt(b, off) })
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) > 0 {
		for _, v := range vs[:min(len(vs), 10)] {
			t.Error(v)
		}
		t.Fatalf("%d dependent-write violations after recovery", len(vs))
	}
	return sec.Stats()
}

// TestDependentWritesSecondaryKilled runs the secondary as a real process and
// kills it with SIGKILL at random moments while groups are being applied. After
// each kill, recovery must leave the volumes at a group boundary that satisfies
// the dependent-write invariant, and no group the primary saw acknowledged (so
// journaled) may be missing.
func TestDependentWritesSecondaryKilled(t *testing.T) {
	t.Parallel()
	kills := 20
	dir := t.TempDir()
	sp := &secondaryProcess{t: t, dir: dir, addr: testenv.FreeAddr(t)}
	sp.start()
	defer sp.kill()

	p := startPrimary(t, dir, primaryOpts{interval: 5 * time.Millisecond, sidefile: 4 << 20,
		dialer: &transport.TCPDialer{Addr: sp.addr, Timeout: time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := workload.Run(ctx, layout, p, 0, 7)
		done <- err
	}()

	rng := rand.New(rand.NewPCG(3, 4))
	var lastGroup uint64
	for i := range kills {
		// Let groups flow, then kill mid-stream.
		target := p.mover.Stats().Acked.Group + 1 + uint64(rng.IntN(20))
		waitFor(t, time.Minute, "groups acknowledged after restart", func() bool {
			return p.mover.Stats().Acked.Group >= target
		})
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		acked := p.mover.Stats().Acked
		sp.kill()
		st := recoverAndCheck(t, dir)
		if st.Group < acked.Group {
			t.Fatalf("kill %d: recovered through group %d, but group %d was acknowledged as journaled", i, st.Group, acked.Group)
		}
		if st.Group < lastGroup {
			t.Fatalf("kill %d: recovered group %d went back from %d", i, st.Group, lastGroup)
		}
		lastGroup = st.Group
		sp.start()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("workload: %v", err)
	}
	qctx, qcancel := context.WithTimeout(context.Background(), time.Minute)
	defer qcancel()
	if err := p.mover.Quiesce(qctx); err != nil {
		t.Fatal(err)
	}
	sp.kill()
	recoverAndCheck(t, dir)
	list, _, _ := openSecondaryVolumes(t, dir, layout.Volumes, layout.BlocksPerVolume)
	defer func() {
		for _, v := range list {
			v.Close()
		}
	}()
	assertConverged(t, layout.Volumes, layout.BlocksPerVolume, p.read, func(v int, b []byte, off int64) error { return list[v].ReadAt(b, off) })
	t.Log(fmt.Sprintf("%d kills; recovered through group %d; images converged", kills, lastGroup))
}
