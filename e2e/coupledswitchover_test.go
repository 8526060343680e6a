package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCoupledSwitchoverLeavesTheGroupAfterAKill switches a member of a
// coupled group over while etcd does not answer (stopped with SIGSTOP just
// before, once the master time had reached the member's last group), kills the promoted site with -9 before etcd answers its leave,
// and lets etcd answer: the member stays in the group, and its last time
// holds the other member's master time, until duplex promote serves the
// promoted site again, which finishes the leave; then the other member's
// master time advances again.
func TestCoupledSwitchoverLeavesTheGroupAfterAKill(t *testing.T) {
	e, s := coupledGroup(t, groupOpts{token: "e2e-coupled-switchover"})
	a, b := s[0], s[1]
	var out, errOut string
	var code int
	for try := 1; ; try++ {
		freezeAfterAGroup(t, e, a)
		code, out, errOut = runDuplex(t, "switchover", "--config", a.path, "--timeout", "20s")
		if code == 0 {
			break
		}
		e.cmd.Process.Signal(syscall.SIGCONT)
		// Refused: the secondary saw etcd stopped before the switchover
		// asked, or journaled a group past the master time etcd held;
		// nothing changed.
		t.Logf("switchover %d refused: %s", try, strings.TrimSpace(errOut))
		if try == 5 {
			t.Fatalf("switchover refused %d times:\n%s%s", try, out, errOut)
		}
	}
	t.Logf("switchover: %s", strings.TrimSpace(out))
	waitLogLine(t, a.sec, time.Minute, "could not leave its coupled group yet")
	a.sec.kill()
	e.cmd.Process.Signal(syscall.SIGCONT)
	members := func() string {
		code, out, errOut := runDuplex(t, "couple", "list", "--config", b.path)
		if code != 0 {
			t.Fatalf("couple list: exit %d\n%s%s", code, out, errOut)
		}
		return out
	}
	if got := members(); !strings.Contains(got, "c1") {
		t.Fatalf("couple list after the kill, before the promoted site ran again:\n%s\nwant c1 still a member (its leave never reached etcd)", got)
	}
	held := b.secondaryStatus().Coupling
	if held == nil || held.Laggard != "c1" {
		t.Fatalf("b's coupling status %+v: want c1 holding its master time", held)
	}
	a.startPromote()
	eventually(t, time.Minute, "c1 out of the group once its promoted site runs again", func() bool { return !strings.Contains(members(), "c1") })
	heldAt, err := time.Parse(time.RFC3339Nano, held.MasterTime)
	if err != nil {
		t.Fatalf("b's master time %q: %v", held.MasterTime, err)
	}
	eventually(t, time.Minute, "b's master time advancing past the one c1 held", func() bool {
		st := b.secondaryStatus().Coupling
		if st == nil || st.Held != "" {
			return false
		}
		at, err := time.Parse(time.RFC3339Nano, st.MasterTime)
		return err == nil && at.After(heldAt)
	})
}

// freezeAfterAGroup stops etcd (SIGSTOP) as soon as s's secondary has
// applied a group it journaled after the call, and every group it
// journaled: the master time etcd then holds has reached the last group.
// An idle secondary still journals an empty group once a Checkpoint (a
// second), and a switchover waits for the last group acknowledged when
// its writes pause: stopped at any other moment (after a fixed sleep, say),
// etcd may hold the master time short of a group journaled just before
// the pause, and the switchover is refused.
func freezeAfterAGroup(t *testing.T, e *etcdProcess, s *procSession) {
	t.Helper()
	caughtUp := func() (uint64, bool) {
		st := s.secondaryStatus()
		if st.Coupling == nil || st.Coupling.Held != "" || st.Group == nil || st.JournaledGroup == nil {
			return 0, false
		}
		return *st.Group, *st.Group >= *st.JournaledGroup
	}
	var from uint64
	eventually(t, time.Minute, "the secondary applying every group it journaled", func() bool {
		g, ok := caughtUp()
		from = g
		return ok
	})
	eventually(t, time.Minute, "the secondary applying a group journaled since", func() bool {
		g, ok := caughtUp()
		return ok && g > from
	})
	e.cmd.Process.Signal(syscall.SIGSTOP)
}
