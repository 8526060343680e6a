package site

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"duplex/pair"
)

// TestAHungLeaseLetsTheOperatorsCommandsBeAnswered: the disk of the
// primary's state directory stops answering; vol1 is suspended (in
// effect, its save hung), then writes to vol2 go on until one waits for
// the timer's lease. Every stamp waits for the lease's write then, a
// suspension's or a resume's marker among them, and a client's write
// holds the subsystem's lock meanwhile. The operator's suspension of
// vol2 and resume of vol1, without --drain, are answered within the
// pair manager's wait for a save, refused naming the timer's lease and
// leaving the pair as it was, and the status answers beside them.
// Once the disk answers, vol1's resume takes effect and vol2's suspension
// is made.
func TestAHungLeaseLetsTheOperatorsCommandsBeAnswered(t *testing.T) {
	p, h := leaseHungAfter(t, "the suspension of vol1", func(p *Primary) error { return p.Pairs().Suspend("vol1") })
	ops := pairOps{p}
	for _, c := range []struct {
		what, vol, was string
		do             func() error
	}{
		{"the suspension of vol2", "vol2", "duplex", func() error { return ops.Suspend(context.Background(), "vol2", false) }},
		{"the resume of vol1", "vol1", "suspended", func() error { return ops.Resume("vol1") }},
	} {
		var err error
		within(t, 10*time.Second, c.what, func() { err = c.do() })
		t.Logf("%s: %v", c.what, err)
		if err == nil || !strings.Contains(err.Error(), "timer's lease") && !notYetInEffect(err) {
			t.Errorf("%s with the timer's lease hung: %v, want it refused naming the lease, or not yet in effect", c.what, err)
		}
		within(t, 10*time.Second, "the status", func() {
			if st := volumeStatus(p.Status(), c.vol).State; st != c.was {
				t.Errorf("%s, refused: %s, want %s", c.vol, st, c.was)
			}
		})
	}
	h.release()
	waitFor(t, 20*time.Second, "vol1 resumed once the disk answered", func() bool { return volumeStatus(p.Status(), "vol1").State != "suspended" })
	waitFor(t, 20*time.Second, "the lease's write to end once the disk answered", func() bool { d, _ := p.timer.LeaseWait(); return d == 0 })
	within(t, 10*time.Second, "the suspension of vol2 once the disk answered", func() {
		// The disk answers, but on a loaded machine the pair state's save
		// may still outlast the pair manager's wait for it (200 ms): the
		// suspension is then answered in effect, saved once the save ends.
		if err := ops.Suspend(context.Background(), "vol2", false); err != nil && !savedLater(err) {
			t.Errorf("the suspension of vol2 once the disk answered: %v", err)
		}
	})
	if st := volumeStatus(p.Status(), "vol2").State; st != "suspended" {
		t.Errorf("vol2, suspended once the disk answered: %s", st)
	}
}

// savedLater says err answers a command in effect whose save outlasted the
// pair manager's wait for it.
func savedLater(err error) bool {
	return errors.Is(err, pair.ErrSaveHung) && strings.Contains(err.Error(), "in effect, but not yet saved")
}

// TestAHungLeaseLetsTheOperatorsAddAndDeleteBeAnswered: as
// TestAHungLeaseLetsTheOperatorsCommandsBeAnswered, vol1 deleted before
// the stamps reached the lease on disk: the operator's add of vol1 and
// deletion of vol2 are answered, refused naming the timer's lease, each
// pair left as it was (the add, which waits with the pair state's save
// too, may be answered not yet in effect first, and refused then).
func TestAHungLeaseLetsTheOperatorsAddAndDeleteBeAnswered(t *testing.T) {
	p, _ := leaseHungAfter(t, "the deletion of vol1", func(p *Primary) error { _, err := p.Pairs().Delete("vol1"); return err })
	ops := pairOps{p}
	for _, c := range []struct {
		what, vol string
		deleted   bool
		do        func() error
	}{
		{"the add of vol1", "vol1", true, func() error { return ops.Add("vol1") }},
		{"the deletion of vol2", "vol2", false, func() error { _, err := ops.Delete("vol2"); return err }},
	} {
		var err error
		within(t, 10*time.Second, c.what, func() { err = c.do() })
		t.Logf("%s: %v", c.what, err)
		if err == nil || !strings.Contains(err.Error(), "timer's lease") && (c.vol != "vol1" || !notYetInEffect(err)) {
			t.Errorf("%s with the timer's lease hung: %v, want it refused naming the lease (or, an add waiting with the pair state's save, not yet in effect)", c.what, err)
		}
		for _, pr := range p.Pairs().Pairs() {
			if pr.Volume == c.vol && pr.Deleted != c.deleted {
				t.Errorf("%s, refused: deleted %v, want %v", c.vol, pr.Deleted, c.deleted)
			}
		}
	}
	within(t, 10*time.Second, "the status", func() { p.Status() })
}

// notYetInEffect says whether err answers an operator's command not yet in
// effect, its save hung.
func notYetInEffect(err error) bool {
	return errors.Is(err, pair.ErrSaveHung) && strings.Contains(err.Error(), "not yet in effect")
}

// TestAHungLeaseLetsTheOperatorsCommandsOnEveryPairBeAnswered: as
// TestAHungLeaseLetsTheOperatorsCommandsBeAnswered, for suspend --all
// and resume --all: the suspension of every pair is refused naming the
// timer's lease, vol2 left duplex; the resume of every pair is answered,
// not yet in effect (its save hung) or refused naming the lease, vol1
// left suspended.
func TestAHungLeaseLetsTheOperatorsCommandsOnEveryPairBeAnswered(t *testing.T) {
	p, _ := leaseHungAfter(t, "the suspension of vol1", func(p *Primary) error { return p.Pairs().Suspend("vol1") })
	ops := pairOps{p}
	var err error
	within(t, 10*time.Second, "suspend --all", func() { _, err = ops.SuspendAll(context.Background(), false) })
	t.Logf("suspend --all: %v", err)
	if err == nil || !strings.Contains(err.Error(), "timer's lease") {
		t.Errorf("suspend --all with the timer's lease hung: %v, want it refused naming the lease", err)
	}
	within(t, 10*time.Second, "resume --all", func() { _, err = ops.ResumeAll() })
	t.Logf("resume --all: %v", err)
	if err == nil || !strings.Contains(err.Error(), "timer's lease") && !notYetInEffect(err) {
		t.Errorf("resume --all with the timer's lease hung: %v, want it refused naming the lease, or not yet in effect", err)
	}
	within(t, 10*time.Second, "the status", func() {
		st := p.Status()
		for vol, want := range map[string]string{"vol1": "suspended", "vol2": "duplex"} {
			if got := volumeStatus(st, vol).State; got != want {
				t.Errorf("%s, the commands refused: %s, want %s", vol, got, want)
			}
		}
	})
}

// leaseHungAfter runs a primary whose state directory's disk hangs (see
// stateDiskHanging), makes the change of vol1 what, answered in effect
// with its save hung, then writes to vol2 until a write waits for the
// timer's lease.
func leaseHungAfter(t *testing.T, what string, change func(*Primary) error) (*Primary, *stateDiskHang) {
	t.Helper()
	p, _, h, _, _ := stateDiskHanging(t, time.Second, 0)
	if err := change(p); err != nil && !errors.Is(err, pair.ErrSaveHung) {
		t.Fatalf("%s, its save hung: %v", what, err)
	}
	holdWritesOnTheLease(t, p)
	return p, h
}
