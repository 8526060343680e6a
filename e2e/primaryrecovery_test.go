package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"duplex/workload"
)

// TestPrimaryKilledRecoversFromActivityLog kills the primary process with
// SIGKILL during dependent writes over NBD, ten times. Each restart copies the
// regions of its activity log, in one consistency group, before it serves
// I/O. After each restart has linked, the secondary satisfies the invariant
// over everything written so far; at the end, after a clean stop, every
// secondary image equals its primary: nothing the primary acknowledged was
// lost, and the resync covered only logged regions, not whole volumes.
func TestPrimaryKilledRecoversFromActivityLog(t *testing.T) {
	t.Parallel()
	const (
		trials  = 10
		blocks  = 256 // per volume, the workload's region: 1 MiB
		volSize = 64 << 20
	)
	s := newSession(t, sessionOpts{name: "e2e-recovery", volSize: volSize})
	s.start()
	names := s.cfg.VolumeNames()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	for trial := range trials {
		if trial > 0 {
			s.startPrimary()
			if !strings.Contains(s.prim.log(), "recovered the regions of its activity log") {
				t.Fatalf("trial %d: restarted primary did not recover from its activity log:\n%s", trial, logTail(s.prim.log(), 2000))
			}
		}
		s.waitLinked()
		// Every write of earlier trials, recovered or not, is now at the
		// secondary, and the dependencies between them hold.
		waitBarrier(t, s, names[0], volSize, trial)
		// Each connection to the secondary is pinned at the group
		// current when it opens: opened after the barrier.
		readers := dialAll(t, s.cfg.Secondary.NBD, names)
		for k := 0; k < trial; k++ {
			lay := workload.Layout{Volumes: len(names), BlocksPerVolume: blocks, Clients: 4, FirstClient: uint32(k * 10)}
			vs, err := workload.Check(lay, func(v int, b []byte, off int64) error {
				return readers[v].ReadAt(b, int64(k)*blocks*workload.BlockSize+off)
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) > 0 {
				t.Fatalf("trial %d: %d violations in region %d after recovery, first: %s", trial, len(vs), k, vs[0])
			}
		}
		lay := workload.Layout{Volumes: len(names), BlocksPerVolume: blocks, Clients: 4, FirstClient: uint32(trial * 10)}
		target := dialTarget(t, s.cfg.Primary.NBD, names, lay, int64(trial)*blocks*workload.BlockSize)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int64, 1)
		seed := rng.Uint64()
		go func() {
			n, _ := workload.Run(ctx, lay, target, 0, seed)
			done <- n
		}()
		target.waitAcked(t)
		time.Sleep(time.Duration(150+rng.IntN(400)) * time.Millisecond)
		s.prim.kill()
		cancel()
		if n := <-done; n == 0 {
			t.Fatalf("trial %d: nothing acknowledged before the kill", trial)
		}
		target.close()
	}
	s.startPrimary()
	s.waitLinked()
	s.drainPrimary()
	st := s.secondaryStatus()
	s.stopSecondary()
	s.assertImagesEqual()
	t.Logf("%d kills of the primary; secondary identical to primary; consistent as of %s", trials, st.ConsistencyTime)
}

// waitBarrier writes a block no trial writes (the last of volume name) at the
// primary, then waits until the secondary's export shows it. The restarted
// primary captured its recovery copies before it served any I/O, so they are
// stamped before this write, and the secondary applies groups in timestamp
// order: once the block is there, every recovered region is applied too.
// Nothing else is written until the checks are done, so they read one state.
//
// A wait for the consistency time to pass the test's clock is no such
// barrier: the stamps of a primary restarted after a crash lead the clock
// (by up to the timer's lease), and the secondary's consistency time with
// them, so such a wait can return before the recovery copies are applied,
// and the check, reading one volume after another, then reads some volumes
// before and some after that group.
func waitBarrier(t *testing.T, s *procSession, name string, volSize int64, trial int) {
	t.Helper()
	c := dialNBD(t, s.cfg.Primary.NBD, name)
	defer c.Close()
	want := make([]byte, workload.BlockSize)
	copy(want, fmt.Sprintf("barrier of trial %d at %s", trial, time.Now().Format(time.RFC3339Nano)))
	off := volSize - workload.BlockSize
	if err := c.WriteAt(want, off); err != nil {
		t.Fatalf("trial %d: barrier write: %v", trial, err)
	}
	got := make([]byte, len(want))
	eventually(t, 60*time.Second, fmt.Sprintf("trial %d: the barrier write at the secondary", trial), func() bool {
		// A connection of its own each time: a connection reads the
		// group current when it opened.
		r := dialNBD(t, s.cfg.Secondary.NBD, name)
		defer r.Close()
		if err := r.ReadAt(got, off); err != nil {
			t.Fatalf("trial %d: barrier read at the secondary: %v", trial, err)
		}
		return bytes.Equal(got, want)
	})
}

// TestRecoverAfterPrimaryKilled loses the primary (SIGKILL) during dependent
// writes; `duplex recover` at the stopped secondary prints its consistency
// time, and the secondary images satisfy the dependent-write invariant.
func TestRecoverAfterPrimaryKilled(t *testing.T) {
	t.Parallel()
	const blocks = 512
	s := newSession(t, sessionOpts{name: "e2e-recover", volSize: 16 << 20})
	s.start()
	names := s.cfg.VolumeNames()
	lay := workload.Layout{Volumes: len(names), BlocksPerVolume: blocks, Clients: 4}
	target := dialTarget(t, s.cfg.Primary.NBD, names, lay, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int64, 1)
	go func() {
		n, _ := workload.Run(ctx, lay, target, 0, 77)
		done <- n
	}()
	time.Sleep(700 * time.Millisecond)
	s.prim.kill()
	cancel()
	<-done
	target.close()
	s.stopSecondary()

	code, out, errOut := runDuplex(t, "recover", "--config", s.path)
	if code != 0 || !strings.Contains(out, "consistent as of") {
		t.Fatalf("recover: exit %d\n%s\n%s", code, out, errOut)
	}
	var files []*os.File
	for _, n := range names {
		_, sp := s.volumePaths(n)
		f, err := os.Open(sp)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	vs, err := workload.Check(lay, func(v int, b []byte, off int64) error {
		_, err := files[v].ReadAt(b, off)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) > 0 {
		t.Fatalf("%d violations after recover, first: %s", len(vs), vs[0])
	}
	img, _, _ := workload.ReadImage(lay, func(v int, b []byte, off int64) error {
		_, err := files[v].ReadAt(b, off)
		return err
	})
	if written, _ := img.Stats(); written == 0 {
		t.Fatal("the recovered secondary holds none of the writes")
	}
	t.Log(strings.TrimSpace(out))
}
