package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"duplex/bench/harness"
	"duplex/control"
)

// The operation faults: what an operator, or the session itself, does to the
// pairs while writes go on.
//
//   - suspend-resume: `duplex pair suspend --all`, writes for a while, `duplex
//     pair resume --all`, until every pair is duplex again;
//   - auto-suspend: the link down past suspend_after with a full sidefile, so
//     the session suspends its pairs, then back, so it resumes them;
//   - disk-full: the secondary's journal file system full, then freed: the
//     secondary, stopped, opens itself again and resumes with no operator in
//     even trials; in odd ones it is killed with SIGKILL while it retries,
//     and restarted once the disk is freed;
//   - resync-crash: kill -9 in the middle of the resync after a suspend: of the
//     primary in even trials (restart, second epoch), of the secondary in odd
//     ones (duplex recover, check, restart).

// pairAll runs `duplex pair OP --all`.
func (t *trial) pairAll(ctx context.Context, op string) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, t.s.bin, "pair", op, "--all", "--config", t.sess.ConfigPath).CombinedOutput()
	if err != nil {
		return fmt.Errorf("duplex pair %s --all: %v: %s", op, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// awaitDuplex waits until every pair is duplex; a pair that stays otherwise
// is a stall.
func (t *trial) awaitDuplex(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, t.s.catchUp)
	defer cancel()
	st, err := harness.WaitStatus(cctx, t.prim, t.sess.Config.Primary.Control, allDuplex(len(t.sess.Volumes)))
	if err != nil {
		t.r.stalled = true
		var states []string
		for _, v := range st.Volumes {
			states = append(states, v.Name+" "+v.State)
		}
		t.r.notef("pairs not duplex: %v (%v)", err, states)
	}
}

func allDuplex(n int) func(control.Status) bool {
	return func(st control.Status) bool {
		if len(st.Volumes) != n {
			return false
		}
		for _, v := range st.Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		return true
	}
}

func anySuspended(st control.Status) bool {
	for _, v := range st.Volumes {
		if v.State == "suspended" {
			return true
		}
	}
	return false
}

func (t *trial) suspendResume(ctx context.Context) (time.Time, error) {
	if err := t.pairAll(ctx, "suspend"); err != nil {
		return time.Time{}, err
	}
	d := 500*time.Millisecond + time.Duration(t.rng.Int64N(int64(1500*time.Millisecond)))
	t.r.notef("suspended %s", d.Round(time.Millisecond))
	sleepCtx(ctx, d)
	if err := t.pairAll(ctx, "resume"); err != nil {
		return time.Time{}, err
	}
	t.awaitDuplex(ctx)
	return time.Now(), nil
}

func (t *trial) autoSuspend(ctx context.Context) (time.Time, error) {
	t.proxy.Cut()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, err := harness.WaitStatus(cctx, t.prim, t.sess.Config.Primary.Control, anySuspended)
	cancel()
	if err != nil {
		t.proxy.Restore()
		return time.Time{}, fmt.Errorf("the session did not suspend its pairs with the link down for 20s: %w", err)
	}
	d := time.Duration(t.rng.Int64N(int64(time.Second)))
	t.r.notef("suspended by the session, link down %s more", d.Round(time.Millisecond))
	sleepCtx(ctx, d)
	t.proxy.Restore()
	t.awaitDuplex(ctx)
	return time.Now(), nil
}

func (t *trial) diskFull(ctx context.Context) (time.Time, error) {
	if err := harness.FillDisk(t.journalFS); err != nil {
		return time.Time{}, err
	}
	d := time.Second + time.Duration(t.rng.Int64N(int64(2*time.Second)))
	sleepCtx(ctx, d)
	st, _ := t.secStatus(ctx)
	retry := "no retry due"
	if r := st.DiskRetry; r != nil {
		retry = fmt.Sprintf("retry %d at %s", r.Attempt, r.Next)
	}
	t.r.notef("journal disk full for %s (secondary link %q, %s)", d.Round(time.Millisecond), st.Link, retry)
	killed := t.r.n%2 == 1
	if killed {
		// Killed while it retries: the restart replays to a group
		// boundary, as after any crash.
		t.sec.Kill()
	}
	if err := harness.FreeDisk(t.journalFS); err != nil {
		return time.Time{}, err
	}
	if killed {
		if err := t.startSecondary(); err != nil {
			return time.Time{}, err
		}
	}
	// Otherwise the secondary resumes by itself, with no restart.
	t.awaitDuplex(ctx)
	if st, err := t.secStatus(ctx); err == nil && (st.Stopped != "" || st.DiskRetry != nil) {
		t.r.stalled = true
		t.r.notef("the secondary still says it stopped (%q) once the pairs are duplex", st.Stopped)
	}
	return time.Now(), nil
}

// resyncRate is the link's bandwidth while a resync-crash trial resyncs: a
// few MiB to copy then take seconds, so that a kill at a random share of
// the copy lands while the secondary holds the resync, not after it.
const resyncRate = 1 << 20

// resyncCrash suspends every pair, writes on, resumes over a slowed link,
// and kills a site at a random share of the resync. A kill the resync has
// already ended before (or whose markers the secondary has not journaled)
// tests nothing of the hold: the trial says so and counts it as missed.
func (t *trial) resyncCrash(ctx context.Context, ld *load) (time.Time, error) {
	if err := t.pairAll(ctx, "suspend"); err != nil {
		return time.Time{}, err
	}
	sleepCtx(ctx, time.Second+time.Duration(t.rng.Int64N(int64(time.Second))))
	t.proxy.SetRate(resyncRate)
	defer t.proxy.SetRate(0)
	if err := t.pairAll(ctx, "resume"); err != nil {
		return time.Time{}, err
	}
	frac := 0.05 + 0.9*t.rng.Float64()
	var total, left int64
	copying := false
	for deadline := time.Now().Add(t.s.catchUp); time.Now().Before(deadline); {
		st, err := harness.FetchRunning(ctx, control.Endpoint{Addr: t.sess.Config.Primary.Control})
		if err != nil {
			return time.Time{}, err
		}
		left, copying = 0, false
		for _, v := range st.Volumes {
			left += v.SizeBytes - v.CopiedBytes
			copying = copying || v.State != "duplex"
		}
		total = max(total, left)
		if !copying || float64(total-left) >= frac*float64(total) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.r.notef("killing at %.0f%% of the resync: %d of %d bytes left to copy", 100*frac, left, total)
	if !copying {
		t.r.notef("the resync ended before the chosen moment")
	}
	if t.r.n%2 == 0 {
		t.prim.Kill()
		// With the primary gone, the secondary's hold stays as the kill
		// left it: held groups say the kill came inside the resync.
		st, err := t.secStatus(ctx)
		t.held = err == nil && st.HeldGroups != nil && *st.HeldGroups > 0
		t.noteHeld()
		t.proxy.SetRate(0)
		return t.primaryKill(ctx, ld)
	}
	end, err := t.secondaryKill(ctx, false)
	t.noteHeld()
	return end, err
}

// noteHeld says whether the kill of a resync-crash trial came while the
// secondary held the resync.
func (t *trial) noteHeld() {
	if t.held {
		t.r.notef("the kill came while the secondary held the resync")
		return
	}
	t.r.missed = true
	t.r.notef("MISSED: the secondary held no resync at the kill, so the trial tested no hold")
}
