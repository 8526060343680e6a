package e2e

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/bench/harness"
	"duplex/control"
	"duplex/workload"
)

// TestPrefixThroughCrashRecoveryResync: a primary killed with more
// activity-log regions than half a sidefile holds copies them after its
// restart as a resync (the pairs pending until done), not in one group.
// That resync too must never leave the secondary inconsistent: while it
// runs, and after a second kill -9 of the primary at a random moment of it,
// the secondary's exports hold a prefix of the acknowledged writes.
func TestPrefixThroughCrashRecoveryResync(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs both sites as processes; skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 3))
	r := &resyncRun{t: t, bin: duplexBinary(t),
		layout: workload.Layout{Volumes: 4, BlocksPerVolume: resyncBlocks, Clients: resyncClients}}
	var err error
	r.sess, err = harness.NewSession(filepath.Join(t.TempDir(), "s"), harness.Spec{
		Session: "recovery-resync", Subsystems: 2, VolumesPerSubsystem: 2, VolumeSize: resyncVolumeSize,
		SidefileLimit: resyncSidefile, Interval: 10 * time.Millisecond, SecondaryNBD: true, Token: true,
		// The writes wait for the secondary rather than suspend the
		// session, so their regions stay in the activity log.
		SuspendAfter: 10 * time.Minute,
		// Slow enough to read the secondary and to kill in the middle.
		CopyRateLimit: 2 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	start := func(role string) *harness.Daemon {
		n++
		return startSite(t, r.bin, role, r.sess, filepath.Join(r.sess.Dir, role+string(rune('0'+n))+".log"))
	}
	r.sec = start("secondary")
	r.prim = start("primary")
	r.waitAll("duplex", time.Minute)

	tg, err := harness.DialTarget(r.sess.Config.Primary.NBD, r.sess.Volumes, resyncClients)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.load = &fuzzLoad{cancel: cancel, done: make(chan struct{}), target: tg}
	go func() {
		defer close(r.load.done)
		r.load.acked, r.load.err = workload.Run(ctx, r.layout, tg, 0, seed)
	}()
	t.Cleanup(r.load.abort)
	time.Sleep(time.Second)
	r.sec.Kill()
	// The writes go on into the sidefile until it is full, each marking
	// its region: a few hundred writes spread over the 64 regions.
	time.Sleep(2 * time.Second)
	r.prim.Kill()
	r.load.abort()

	r.sec = start("secondary")
	r.waitSettled()
	img, bad := r.readExports()
	r.check("at the secondary restarted after both kills", img, bad)
	r.prim = start("primary")
	lctx, lcancel := context.WithTimeout(context.Background(), time.Minute)
	defer lcancel()
	if _, err := harness.WaitStatus(lctx, r.prim, r.sess.Config.Primary.Control, func(control.Status) bool { return true }); err != nil {
		t.Fatal(err)
	}
	log := r.prim.LogTail(1 << 20)
	resynced := false
	for _, line := range strings.Split(log, "\n") {
		resynced = resynced || strings.Contains(line, "did not stop cleanly") && strings.Contains(line, "activity log") && strings.Contains(line, "resynchronising")
	}
	if !resynced {
		t.Fatalf("the restarted primary did not resync its activity log's regions (fewer than half a sidefile?):\n%s", r.prim.LogTail(3000))
	}

	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "resynchronising") {
			t.Logf("restarted primary: %s", line)
		}
	}
	frac := 0.1 + 0.8*rng.Float64()
	checks := 0
	for deadline := time.Now().Add(2 * time.Minute); ; {
		st, err := fetchStatus(r.sess.Config.Primary.Control)
		if err != nil {
			t.Fatal(err)
		}
		var size, copied int64
		pending := false
		for _, v := range st.Volumes {
			if v.State != "duplex" {
				pending = true
				size += v.SizeBytes
				copied += v.CopiedBytes
			}
		}
		if !pending || float64(copied) >= frac*float64(size) {
			t.Logf("seed %d: killing the primary at %d of %d bytes of the recovery's resync (pending %v), after %d checks during it",
				seed, copied, size, pending, checks)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the recovery's resync did not reach %.0f%% in 2 minutes", 100*frac)
		}
		// Two reads: writes first, their dependencies second; the copy
		// only moves forward, so a dependency met at the first read is
		// met at the second.
		holders, bad := r.readExports()
		deps, _ := r.readExports()
		bad = append(bad, holders.Violations(deps, workload.Scope{})...)
		if len(bad) > 0 {
			t.Fatalf("during the recovery's resync the secondary holds %d writes without a write they depend on; first %v", len(bad), bad[0])
		}
		checks++
	}
	r.prim.Kill()
	r.waitSettled()
	img, bad = r.readExports()
	r.check("after kill -9 of the primary in the recovery's resync", img, bad)
}
