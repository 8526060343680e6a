package e2e

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"duplex/nbd"
	"duplex/workload"
)

// nbdTarget is a workload target that writes through NBD, each workload
// client over connections of its own (one per volume, since an NBD connection
// opens one export), into one region of every volume.
type nbdTarget struct {
	conns     [][]*nbd.Client // [client][volume]
	perClient int             // blocks each client owns in the region
	base      int64           // byte offset of the region in each volume
	acked     atomic.Int64    // writes acknowledged so far
}

// dialTarget opens, for each of lay's clients, a connection to each export
// of names at addr: an nbdTarget over the region at base of every volume.
func dialTarget(t *testing.T, addr string, names []string, lay workload.Layout, base int64) *nbdTarget {
	t.Helper()
	x := &nbdTarget{perClient: lay.BlocksPerVolume / lay.Clients, base: base}
	for range lay.Clients {
		x.conns = append(x.conns, dialAll(t, addr, names))
	}
	return x
}

func (x *nbdTarget) WriteAt(ctx context.Context, vol int, p []byte, off int64) error {
	// A client owns blocks [c*perClient, (c+1)*perClient) of the region.
	c := int(off/workload.BlockSize) / x.perClient
	err := x.conns[c][vol].WriteAt(p, x.base+off)
	if err == nil {
		x.acked.Add(1)
	}
	return err
}

// waitAcked waits until the primary acknowledged a first write, so that a
// kill after it interrupts a workload that is really running, however slowly
// a loaded machine starts it.
func (x *nbdTarget) waitAcked(t *testing.T) {
	t.Helper()
	waitFor(t, time.Minute, "a first acknowledged write", func() bool { return x.acked.Load() > 0 })
}

func (x *nbdTarget) close() {
	for _, cs := range x.conns {
		for _, c := range cs {
			c.Close()
		}
	}
}

// TestPrimaryCrashDependentWrites kills the primary process with SIGKILL at a
// random moment while four clients issue dependent writes over NBD, ten
// times. After each kill the secondary, read through its read-only export,
// must satisfy the dependent-write invariant; then the primary restarts with
// the same config for the next trial.
//
// Each trial writes its own region of the volumes with its own client
// numbers (Layout.FirstClient = trial*10): the primary may hold acknowledged
// writes of a killed trial that the secondary never got (there is no primary
// crash recovery yet), so convergence is not asserted, and a later trial
// overwriting an earlier one's blocks would break the earlier dependencies'
// evidence rather than the invariant.
func TestPrimaryCrashDependentWrites(t *testing.T) {
	t.Parallel()
	const (
		trials       = 10
		regionBlocks = 128 // per volume per trial: 512 KiB
	)
	s := newSession(t, sessionOpts{volSize: 16 * (1 << 20)})
	s.start()
	names := s.cfg.VolumeNames()
	layoutOf := func(trial int) workload.Layout {
		return workload.Layout{Volumes: len(names), BlocksPerVolume: regionBlocks, Clients: 4, FirstClient: uint32(trial * 10)}
	}
	base := func(trial int) int64 { return int64(trial) * regionBlocks * workload.BlockSize }

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	var totalApplied int
	for trial := range trials {
		if trial > 0 {
			s.startPrimary()
		}
		// After an unclean stop the primary copies every pair again in full;
		// while a pair is pending the secondary is not a consistent copy, so
		// the trial's writes (and the kill) start once all are duplex.
		s.waitLinked()

		lay := layoutOf(trial)
		target := dialTarget(t, s.cfg.Primary.NBD, names, lay, base(trial))
		ctx, cancel := context.WithCancel(context.Background())
		type result struct {
			acked int64
			err   error
		}
		done := make(chan result, 1)
		seed := rng.Uint64()
		go func() {
			n, err := workload.Run(ctx, lay, target, 0, seed)
			done <- result{n, err}
		}()
		// Let the writes run for a random while, then crash the primary
		// under them.
		target.waitAcked(t)
		time.Sleep(time.Duration(100+rng.IntN(501)) * time.Millisecond)
		s.prim.kill()
		cancel()
		r := <-done
		target.close()
		if r.acked == 0 {
			t.Fatalf("trial %d: no write was acknowledged before the kill (%v)", trial, r.err)
		}

		// With the primary dead and the link down, the secondary receives
		// nothing more, but its applier may still be applying groups it
		// acknowledged before the kill while the check reads: the check
		// reads the holders and their dependencies in two passes.
		s.waitPrimaryGone()
		for k := 0; k <= trial; k++ {
			l := layoutOf(k)
			// The secondary's read-only exports, each connection pinned
			// at the group current when it opens: opened anew for each pass.
			open := func() (workload.Reader, func()) {
				readers := dialAll(t, s.cfg.Secondary.NBD, names)
				return func(v int, b []byte, off int64) error { return readers[v].ReadAt(b, base(k)+off) }, func() {
					for _, c := range readers {
						c.Close()
					}
				}
			}
			vs, err := checkPinnedCopy(l, open)
			if err != nil {
				t.Fatalf("trial %d: check region %d: %v", trial, k, err)
			}
			for _, v := range vs[:min(len(vs), 10)] {
				t.Errorf("trial %d, region %d: %s", trial, k, v)
			}
			if len(vs) > 0 {
				t.Fatalf("trial %d: %d dependent-write violations on the secondary in region %d", trial, len(vs), k)
			}
			if k == trial {
				read, done := open()
				img, _, err := workload.ReadImage(l, read)
				done()
				if err != nil {
					t.Fatal(err)
				}
				written, _ := img.Stats()
				totalApplied += written
				t.Logf("trial %d: killed after %d acknowledged writes; the secondary holds %d of the trial's blocks (%v)",
					trial, r.acked, written, r.err)
			}
		}
	}
	if totalApplied == 0 {
		t.Fatal("the secondary never held any write of any trial: the invariant was checked on empty volumes only")
	}
	s.stopSecondary()
}
