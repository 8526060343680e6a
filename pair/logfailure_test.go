package pair

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/disk"
)

// frozenClock stands still until the test moves it (by).
type frozenClock struct{ now time.Time }

func (c *frozenClock) Now() time.Time     { return c.now }
func (c *frozenClock) by(d time.Duration) { c.now = c.now.Add(d) }

// freezeClock has the manager read the returned clock, not the time.
func (r *rig) freezeClock() *frozenClock {
	c := &frozenClock{now: time.Now()}
	r.mg.mu.Lock()
	r.mg.now = c.Now
	r.mg.mu.Unlock()
	return c
}

// steps runs the manager's steps n times, as settle does.
func (r *rig) steps(n int) {
	for range n {
		r.mg.copyOne(context.Background())
		r.mv.ship()
		r.mg.promote()
	}
}

// TestACopyWhoseLogMarkFailsDoesNotSpin: the activity log's disk fails
// (EIO) while two pairs are in their first copy. A copy's region cannot be
// marked, so nothing of it may ship; the copier does not try again at once,
// for ever, ahead of everything else: each pair's copy is tried once and
// then waits, longer after each failure, every pending pair's status says
// the log fails (it is every pair's log), and the regions stay to copy.
// Once the log's disk works again, both copies go on to duplex.
func TestACopyWhoseLogMarkFailsDoesNotSpin(t *testing.T) {
	in := disk.NewInjector(nil)
	r := newRigOn(t, in, 4*twinRegion, 8<<20, "a", "b")
	clock := r.freezeClock()
	in.Inject(disk.Fault{Op: disk.OpWrite, Under: r.logPath(), Err: disk.EIO})
	const steps = 50
	r.steps(steps)
	if n := in.Injected(disk.OpWrite); n != 2 {
		t.Fatalf("the copier tried %d writes of the failing activity log in %d steps, want one per pending pair, then a wait", n, steps)
	}
	if r.mg.copying() {
		t.Fatal("the manager's loop goes on copying at once, every copy waiting after a failure")
	}
	for _, name := range []string{"a", "b"} {
		p := r.pair(name)
		if p.State != Pending || p.Copied != 0 {
			t.Fatalf("pair %s, its copy's marks failing: %+v, want pending, nothing copied", name, p)
		}
		if got := r.pendingRegions(name).Count(); got != 4 {
			t.Fatalf("pair %s: %d regions left to copy, want all 4", name, got)
		}
		if !strings.Contains(p.CopyFailing, "activity log") || !strings.Contains(p.CopyFailing, "every pair") || !strings.Contains(p.CopyFailing, "input/output error") {
			t.Fatalf("pair %s: status says %q of its copy, want the activity log's error, and that it is every pair's", name, p.CopyFailing)
		}
	}
	// Each failure in a row doubles the wait, up to copyRetryLast.
	clock.by(copyRetryFirst)
	r.steps(steps)
	if n := in.Injected(disk.OpWrite); n != 4 {
		t.Fatalf("%d writes of the log tried once the first wait was over, want 4: each pair's copy once more", n)
	}
	clock.by(copyRetryFirst)
	r.steps(steps)
	if n := in.Injected(disk.OpWrite); n != 4 {
		t.Fatalf("%d writes of the log tried, the second wait (twice the first) not over, want 4", n)
	}
	for range 20 {
		clock.by(copyRetryLast)
		r.steps(1)
	}
	if n := in.Injected(disk.OpWrite); n > 4+2*20 {
		t.Fatalf("%d writes of the log tried in 20 of the longest waits, want at most one per pair in each", n)
	}
	in.Clear()
	clock.by(copyRetryLast)
	r.settle()
	for _, name := range []string{"a", "b"} {
		if p := r.pair(name); p.CopyFailing != "" {
			t.Fatalf("pair %s duplex, its copy done, and status still says %q", name, p.CopyFailing)
		}
	}
}

// TestCopiesWaitingForAFailingLogGoOnOnceItIsOff: two first copies wait
// after the activity log failed their marks. A write then finds the log
// failing too, and the pair state records that the run goes on without
// it: the write goes on, and so do both copies, at once, though none of
// their waits is over (the clock stands still), to the end.
func TestCopiesWaitingForAFailingLogGoOnOnceItIsOff(t *testing.T) {
	in := disk.NewInjector(nil)
	r := newRigOn(t, in, 4*twinRegion, 8<<20, "a", "b")
	r.freezeClock()
	in.Inject(disk.Fault{Op: disk.OpWrite, Under: r.logPath(), Err: disk.EIO})
	r.steps(5)
	for _, name := range []string{"a", "b"} {
		if p := r.pair(name); p.Copied != 0 || !strings.Contains(p.CopyFailing, "activity log") {
			t.Fatalf("pair %s, its copy's marks failing: %+v, want nothing copied and waiting for the log", name, p)
		}
	}
	if err := (actlog.WritePath{Log: r.al}).Mark("a", 0, 4096); err != nil {
		t.Fatalf("a write, the log failing and the pair state writable: %v", err)
	}
	if r.al.Off() == nil {
		t.Fatal("the write went on, and the log is not off")
	}
	b, err := os.ReadFile(filepath.Join(r.dir, "pairs.json"))
	if err != nil || !strings.Contains(string(b), `"no_activity_log":true`) {
		t.Fatalf("pair state %s (%v), want it to record that the run has no log", b, err)
	}
	r.steps(20)
	for _, name := range []string{"a", "b"} {
		if p := r.pair(name); p.State != Duplex {
			t.Fatalf("pair %s, the log off, its wait not over: %+v, want its copy done", name, p)
		}
	}
}
