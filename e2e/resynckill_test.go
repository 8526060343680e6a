package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/bench/harness"
	"duplex/bitmap"
	"duplex/control"
	"duplex/nbd"
	"duplex/workload"
)

// The black-box check of a resync, through the daemons as an operator runs
// them: a dependent-write client over the four volumes of a session laid out
// as the demo's, `duplex pair suspend --all`, writes long enough that the
// resync is far larger than a record set or half a sidefile, `duplex pair
// resume --all`, then kill -9 of one site at a random moment of the resync.
// The secondary must then hold exactly a prefix of the acknowledged writes:
// each write depends on the last one any client saw acknowledged before it
// was issued, so the dependent-write check over all four volumes is a check
// that what the secondary holds is a prefix. The writer of the two kill
// tests is libnbd's (testdata/depwrite.py), a client the NBD server was not
// written with; the test of both kills keeps our own.

const (
	resyncBlocks     = 4096 // 16 MiB volumes
	resyncClients    = 4
	resyncVolumeSize = resyncBlocks * workload.BlockSize
	resyncSidefile   = 1 << 20
	// resyncWrites are the writes made while the pairs are suspended:
	// three per region of the resync bitmaps, which leave about one
	// region in twenty untouched.
	resyncWrites = 3 * 4 * resyncVolumeSize / bitmap.DefaultRegion
)

// TestPrefixThroughResyncPrimaryKilled kills the primary in the middle of the
// resync and checks the secondary's read-only exports.
func TestPrefixThroughResyncPrimaryKilled(t *testing.T) {
	t.Parallel()
	r := startResync(t, libnbdWriter)
	r.prim.Kill()
	t.Logf("primary killed at %s of the resync", r.progress)
	r.logHold()
	// The secondary goes on applying what it journaled; then it is still.
	r.waitSettled()
	img, bad := r.readExports()
	r.check("through the secondary's exports after kill -9 of the primary", img, bad)
}

// TestPrefixThroughResyncSecondaryKilled kills the secondary in the middle of
// the resync, runs `duplex recover` and checks its images.
func TestPrefixThroughResyncSecondaryKilled(t *testing.T) {
	t.Parallel()
	r := startResync(t, libnbdWriter)
	r.sec.Kill()
	t.Logf("secondary killed at %s of the resync", r.progress)
	r.stopWriter()
	out, err := exec.Command(r.bin, "recover", "--config", r.sess.ConfigPath).CombinedOutput()
	if err != nil {
		t.Fatalf("duplex recover: %v\n%s", err, out)
	}
	t.Logf("duplex recover:\n%s", out)
	im, err := harness.OpenImages(r.sess.SecondaryPaths())
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	img, bad, err := workload.ReadImage(r.layout, im.Reader(0))
	if err != nil {
		t.Fatal(err)
	}
	r.check("on the secondary's images after kill -9 and duplex recover", img, bad)
}

type resyncRun struct {
	t        *testing.T
	bin      string
	sess     *harness.Session
	prim     *harness.Daemon
	sec      *harness.Daemon
	layout   workload.Layout
	load     *fuzzLoad   // our dependent-write client, or
	lib      *libnbdLoad // libnbd's
	progress string      // how far the resync was when the kill came
}

// startSite starts the daemon of role of the harness session s, its log
// at logPath; it is killed at the end of the test, and the tail of its log
// shown if the test failed.
func startSite(t *testing.T, bin, role string, s *harness.Session, logPath string) *harness.Daemon {
	t.Helper()
	d, err := harness.StartSite(bin, role, s, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Kill()
		if t.Failed() {
			t.Logf("log of %s (%s):\n%s", role, filepath.Base(logPath), d.LogTail(6000))
		}
	})
	return d
}

// The dependent-write client a resync test writes with.
type resyncWriter int

const (
	goWriter     resyncWriter = iota // package workload over package nbd's client
	libnbdWriter                     // testdata/depwrite.py over libnbd
)

// startResync runs the scenario up to the moment of the kill, which it leaves
// to the caller.
func startResync(t *testing.T, w resyncWriter) *resyncRun {
	if testing.Short() {
		t.Skip("runs both sites as processes; skipped with -short")
	}
	if w == libnbdWriter {
		needLibnbdPython(t)
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	r := &resyncRun{t: t, bin: duplexBinary(t),
		layout: workload.Layout{Volumes: 4, BlocksPerVolume: resyncBlocks, Clients: resyncClients}}
	var err error
	r.sess, err = harness.NewSession(filepath.Join(t.TempDir(), "s"), harness.Spec{
		Session: "resync", Subsystems: 2, VolumesPerSubsystem: 2, VolumeSize: resyncVolumeSize,
		SidefileLimit: resyncSidefile, Interval: 10 * time.Millisecond, SecondaryNBD: true, Token: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := func(role string) *harness.Daemon {
		return startSite(t, r.bin, role, r.sess, filepath.Join(r.sess.Dir, role+".log"))
	}
	r.sec = start("secondary")
	r.prim = start("primary")
	t.Cleanup(func() {
		if r.load != nil {
			r.load.abort()
		}
	})
	r.waitAll("duplex", time.Minute)
	// Every first copy is journaled at the secondary once its pair is
	// duplex: what the primary reports replicated from here on is writes.
	var copies uint64
	waitFor(t, time.Minute, "the primary's status", func() bool {
		var err error
		copies, err = r.replicated()
		return err == nil
	})

	if w == libnbdWriter {
		r.lib = startLibnbdLoad(t, r.sess.Config.Primary.NBD, r.sess.Volumes, r.layout, seed)
	} else {
		tg, err := harness.DialTarget(r.sess.Config.Primary.NBD, r.sess.Volumes, resyncClients)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r.load = &fuzzLoad{cancel: cancel, done: make(chan struct{}), target: tg}
		go func() {
			defer close(r.load.done)
			r.load.acked, r.load.err = workload.Run(ctx, r.layout, r.load, 0, seed)
		}()
	}
	// Writes journaled at the secondary before the suspension, which the
	// check after it must find there: a loaded machine may journal none in
	// any fixed time.
	waitFor(t, time.Minute, "1 MiB of writes journaled at the secondary", func() bool {
		n, err := r.replicated()
		return err == nil && n >= copies+1<<20
	})

	r.duplex("pair", "suspend", "--all")
	r.waitAll("suspended", 30*time.Second)
	// Every pair suspended, the secondary receives no more updates: what it
	// holds must be a prefix already, before any resync. Suspending the
	// pairs one after another while writes go on would leave it holding
	// writes of the last pairs suspended that depend on writes the first
	// ones no longer shipped.
	r.waitSettled()
	img, bad := r.readExports()
	r.check("after duplex pair suspend --all", img, bad)
	// Writes while suspended, three times as many as there are 64 KiB
	// regions in the volumes, touch nearly every region: the resync is
	// tens of megabytes, the sidefile one. A loaded machine writes slowly:
	// what is waited for is the writes, not a time.
	from, since := r.writes(), time.Now()
	waitFor(t, 5*time.Minute, fmt.Sprintf("%d writes while suspended", resyncWrites), func() bool {
		return r.writes()-from >= resyncWrites
	})
	t.Logf("%d writes while suspended (waited %v for them)", r.writes()-from, time.Since(since).Round(time.Millisecond))
	r.duplex("pair", "resume", "--all")
	if n := r.toCopy(); n < 16*resyncSidefile {
		t.Fatalf("the resync is %d bytes, not far larger than the sidefile (%d)", n, resyncSidefile)
	} else {
		t.Logf("seed %d: resync of %d bytes with a sidefile of %d", seed, n, resyncSidefile)
	}
	// A random moment of the resync: a random share of it copied.
	frac := 0.05 + 0.9*rng.Float64()
	// A loaded machine copies slowly: the resync fails only if it stands
	// still for a minute.
	var size, copied int64
	last, since := int64(-1), time.Now()
	for {
		st, err := fetchStatus(r.sess.Config.Primary.Control)
		if err == nil {
			size, copied = 0, 0
			pending := false
			for _, v := range st.Volumes {
				size += v.SizeBytes
				copied += v.CopiedBytes
				pending = pending || v.State != "duplex"
			}
			if !pending {
				r.progress = "the end (the resync finished before the chosen moment)"
				break
			}
			if float64(copied) >= frac*float64(size) {
				r.progress = fmt.Sprintf("%.0f%% (%d of %d bytes in step)", 100*float64(copied)/float64(size), copied, size)
				break
			}
			if copied != last {
				last, since = copied, time.Now()
			}
		}
		if time.Since(since) > time.Minute {
			t.Fatalf("the resync did not reach %.0f%%: it copied nothing for a minute, at %d of %d bytes", 100*frac, copied, size)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r
}

// stopWriter ends the writes, the primary still up: the writes in flight
// get their replies or fail.
func (r *resyncRun) stopWriter() {
	if r.lib != nil {
		n, err := r.lib.stop()
		r.t.Logf("the libnbd client saw %d writes acknowledged (%v)", n, err)
	}
	if r.load != nil {
		r.load.cancel()
		<-r.load.done
	}
}

// logHold says whether the secondary holds a resync after the kill of the
// primary: if not, the kill came after the resync and checks less.
func (r *resyncRun) logHold() {
	st, err := fetchStatus(r.sess.Config.Secondary.Control)
	switch {
	case err != nil:
		r.t.Logf("secondary status: %v", err)
	case st.HeldGroups != nil && *st.HeldGroups > 0:
		r.t.Logf("the secondary holds %d groups of the resync of %v", *st.HeldGroups, st.Resyncing)
	default:
		r.t.Logf("the secondary holds no resync: the kill came after it")
	}
}

// replicated is what the primary reports replicated: the bytes of the
// updates the secondary journaled, copies and writes.
func (r *resyncRun) replicated() (uint64, error) {
	st, err := fetchStatus(r.sess.Config.Primary.Control)
	return st.BytesReplicate, err
}

// writes is how many writes the writer has seen acknowledged so far.
func (r *resyncRun) writes() int64 {
	if r.lib != nil {
		return r.lib.acked.Load()
	}
	return r.load.writes.Load()
}

// toCopy is what the pairs have still to copy, as status reports it.
func (r *resyncRun) toCopy() int64 {
	st, err := fetchStatus(r.sess.Config.Primary.Control)
	if err != nil {
		r.t.Fatal(err)
	}
	var n int64
	for _, v := range st.Volumes {
		n += v.SizeBytes - v.CopiedBytes
	}
	return n
}

func (r *resyncRun) duplex(args ...string) {
	r.t.Helper()
	out, err := exec.Command(r.bin, append(args, "--config", r.sess.ConfigPath)...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("duplex %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (r *resyncRun) waitAll(state string, d time.Duration) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := harness.WaitStatus(ctx, r.prim, r.sess.Config.Primary.Control, func(st control.Status) bool {
		for _, v := range st.Volumes {
			if v.State != state {
				return false
			}
		}
		return len(st.Volumes) == len(r.sess.Volumes)
	})
	if err != nil {
		r.t.Fatalf("every pair %s: %v", state, err)
	}
}

// waitSettled waits until the secondary has applied every group it journaled
// (or holds them for an open resync) and the applied group stays the same.
func (r *resyncRun) waitSettled() {
	r.t.Helper()
	var last uint64
	stable := 0
	deadline := time.Now().Add(2 * time.Minute)
	for stable < 10 {
		st, err := fetchStatus(r.sess.Config.Secondary.Control)
		// Unless a resync holds the volumes (then nothing is applied),
		// applied must have caught up with journaled: after a resync the
		// groups it held are applied from the journal, which takes seconds
		// in which the applied group may not move, and the read-only
		// exports are consistent per request only, so reading the volumes
		// one after the other then sees two states.
		caughtUp := err == nil && st.Group != nil && (len(st.Resyncing) > 0 ||
			st.JournaledGroup == nil || *st.JournaledGroup == *st.Group)
		if caughtUp && *st.Group == last {
			stable++
		} else if caughtUp {
			last, stable = *st.Group, 0
		} else {
			stable = 0
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the secondary did not settle in 2m")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *resyncRun) readExports() (workload.Image, []workload.Violation) {
	r.t.Helper()
	var clients []*nbd.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, v := range r.sess.Volumes {
		c, err := nbd.Dial(r.sess.Config.Secondary.NBD, v)
		if err != nil {
			r.t.Fatal(err)
		}
		clients = append(clients, c)
	}
	img, bad, err := workload.ReadImage(r.layout, func(v int, p []byte, off int64) error { return clients[v].ReadAt(p, off) })
	if err != nil {
		r.t.Fatal(err)
	}
	return img, bad
}

// check fails unless img holds a prefix of the acknowledged writes, and holds
// writes at all.
func (r *resyncRun) check(when string, img workload.Image, bad []workload.Violation) {
	r.t.Helper()
	written, _ := img.Stats()
	if written == 0 {
		r.t.Fatalf("%s: the secondary holds no write", when)
	}
	bad = append(bad, img.Violations(img, workload.Scope{})...)
	if len(bad) > 0 {
		var first []string
		for _, v := range bad[:min(len(bad), 5)] {
			first = append(first, v.String())
		}
		r.t.Fatalf("%s: not a prefix of the acknowledged writes: %d blocks break the dependent-write rule; first:\n  %s",
			when, len(bad), strings.Join(first, "\n  "))
	}
	r.t.Logf("%s: %d blocks written, a prefix", when, written)
}
