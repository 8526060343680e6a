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
//     ones (duplex recover, check, restart);
//   - resync-disk-full: the secondary's journal file system full in the
//     middle of the resync after a suspend, then freed (needs root): the
//     secondary opens itself again in even trials; in odd ones it is killed
//     with SIGKILL while it retries, recovered, checked and restarted;
//   - resync-disk-error: the disk of the secondary's first volume fails
//     (EIO) from the middle of such a resync, so that applying the groups
//     held for it fails, then works again; even and odd trials as for
//     resync-disk-full (needs root, nbdkit and nbdfuse).

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
	t.proxy.SetRate(resyncRate)
	defer t.proxy.SetRate(0)
	if err := t.intoResync(ctx, "killing"); err != nil {
		return time.Time{}, err
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

// intoResync suspends every pair, writes on, resumes them over the link as
// slowed by the caller, and returns at a random share of the resync that
// follows (what is doing then is the trial's fault: what names it).
func (t *trial) intoResync(ctx context.Context, what string) error {
	if err := t.pairAll(ctx, "suspend"); err != nil {
		return err
	}
	sleepCtx(ctx, time.Second+time.Duration(t.rng.Int64N(int64(time.Second))))
	if err := t.pairAll(ctx, "resume"); err != nil {
		return err
	}
	frac := 0.05 + 0.9*t.rng.Float64()
	var total, left int64
	copying := false
	for deadline := time.Now().Add(t.s.catchUp); time.Now().Before(deadline); {
		st, err := harness.FetchRunning(ctx, control.Endpoint{Addr: t.sess.Config.Primary.Control})
		if err != nil {
			return err
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
	t.r.notef("%s at %.0f%% of the resync: %d of %d bytes left to copy", what, 100*frac, left, total)
	if !copying {
		t.r.notef("the resync ended before the chosen moment")
	}
	return nil
}

// resyncDiskFull fills the secondary's journal file system at a random share
// of a resync, for one to three seconds: the secondary stops on the disk's
// error with groups of the resync journaled and held, the primary's link
// goes down, and the session suspends its pairs with the resync unfinished.
// In even trials the disk is freed under the running secondary, which opens
// itself again; in odd ones the secondary is killed with SIGKILL while it
// retries, the disk freed, its volumes recovered offline and checked (they
// must be as of the last group before the resync, no journaled group
// lost), and it is restarted. Either way the pairs must end duplex, with
// nothing acknowledged lost.
func (t *trial) resyncDiskFull(ctx context.Context) (time.Time, error) {
	t.proxy.SetRate(resyncRate)
	defer t.proxy.SetRate(0)
	if err := t.intoResync(ctx, "filling the journal's disk"); err != nil {
		return time.Time{}, err
	}
	if st, err := t.secStatus(ctx); err == nil {
		t.held = st.HeldGroups != nil && *st.HeldGroups > 0
	}
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
	t.r.notef("journal disk full for %s (secondary link %q, stopped %q, %s)", d.Round(time.Millisecond), st.Link, st.Stopped, retry)
	t.noteHeld()
	if t.r.n%2 == 0 {
		if err := harness.FreeDisk(t.journalFS); err != nil {
			return time.Time{}, err
		}
	} else {
		t.sec.Kill()
		if err := harness.FreeDisk(t.journalFS); err != nil {
			return time.Time{}, err
		}
		if err := t.recoverAndCheck(ctx, "after the disk filled mid-resync, kill -9 and recover"); err != nil {
			return time.Time{}, err
		}
		if err := t.startSecondary(); err != nil {
			return time.Time{}, err
		}
	}
	t.proxy.SetRate(0)
	t.awaitDuplex(ctx)
	if st, err := t.secStatus(ctx); err == nil && (st.Stopped != "" || st.DiskRetry != nil) {
		t.r.stalled = true
		t.r.notef("the secondary still says it stopped (%q) once the pairs are duplex", st.Stopped)
	}
	return time.Now(), nil
}

// noteHeld says whether the fault of a resync-crash or resync-disk-full
// trial came while the secondary held the resync.
func (t *trial) noteHeld() {
	if t.held {
		t.r.notef("the fault came while the secondary held the resync")
		return
	}
	t.r.missed = true
	t.r.notef("MISSED: the secondary held no resync at the fault, so the trial tested no hold")
}

// resyncDiskError makes the disk of the secondary's first volume fail with
// EIO at a random share of a resync. The volumes are held for the resync, so
// the disk's error comes when the secondary applies the held groups at its
// end (the link's pace is lifted then, for the resync to end): the
// secondary stops with groups journaled that its volumes do not hold yet. In
// even trials the disk works again under the running secondary, which opens
// itself again and applies them; in odd ones the secondary is killed with
// SIGKILL while it retries, the disk works again, its volumes are recovered
// offline and checked (every one consistent, the journal's room never in
// question, no journaled group lost), and it is restarted.
func (t *trial) resyncDiskError(ctx context.Context) (time.Time, error) {
	t.proxy.SetRate(resyncRate)
	defer t.proxy.SetRate(0)
	if err := t.intoResync(ctx, "failing v001's disk"); err != nil {
		return time.Time{}, err
	}
	if st, err := t.secStatus(ctx); err == nil {
		t.held = st.HeldGroups != nil && *st.HeldGroups > 0
	}
	if err := t.failing.Fail(true); err != nil {
		return time.Time{}, err
	}
	t.proxy.SetRate(0)
	cctx, cancel := context.WithTimeout(ctx, t.s.catchUp)
	st, err := harness.WaitStatus(cctx, t.sec, t.sess.Config.Secondary.Control, func(st control.Status) bool {
		return st.Stopped != "" || st.DiskRetry != nil
	})
	cancel()
	if err != nil {
		t.held = false
		t.r.notef("the secondary did not stop on its failing disk: %v", err)
	} else {
		retry := "no retry due"
		if r := st.DiskRetry; r != nil {
			retry = fmt.Sprintf("retry %d at %s", r.Attempt, r.Next)
		}
		t.r.notef("v001's disk failing: the secondary stopped %q, %s", st.Stopped, retry)
	}
	t.noteHeld()
	sleepCtx(ctx, time.Second+time.Duration(t.rng.Int64N(int64(time.Second))))
	if t.r.n%2 == 0 {
		if err := t.failing.Fail(false); err != nil {
			return time.Time{}, err
		}
	} else {
		t.sec.Kill()
		if err := t.failing.Fail(false); err != nil {
			return time.Time{}, err
		}
		if err := t.recoverAndCheck(ctx, "after v001's disk failed mid-resync, kill -9 and recover"); err != nil {
			return time.Time{}, err
		}
		if err := t.startSecondary(); err != nil {
			return time.Time{}, err
		}
	}
	t.awaitDuplex(ctx)
	if st, err := t.secStatus(ctx); err == nil && (st.Stopped != "" || st.DiskRetry != nil) {
		t.r.stalled = true
		t.r.notef("the secondary still says it stopped (%q) once the pairs are duplex", st.Stopped)
	}
	return time.Now(), nil
}

// recoverAndCheck recovers the killed secondary's volumes with duplex
// recover, counts a journaled group it came back without as lost, and checks
// the image.
func (t *trial) recoverAndCheck(ctx context.Context, when string) error {
	jg, jt, last, tail, err := t.recoversTo()
	if err != nil {
		return err
	}
	group, ct, err := t.recover(ctx)
	if err != nil {
		return err
	}
	var at string
	if last != jg {
		at = fmt.Sprintf(" (groups %d-%d after it held by the resync)", jg+1, last)
	}
	if tail != "" {
		at += fmt.Sprintf(" (then a torn tail: %s)", tail)
	}
	t.r.notef("killed at journal group %d%s, recovered group %d", jg, at, group)
	if group < jg || ct < jt {
		t.r.lost++
		t.r.notef("LOST: the journal held group %d (time %d) at the kill; recover came back at group %d (time %d)", jg, jt, group, ct)
	}
	return t.checkSecondary(when)
}
