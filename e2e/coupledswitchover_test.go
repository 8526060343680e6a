package e2e

import (
	"strings"
	"testing"
	"time"

	"duplex/control"
)

// TestCoupledSwitchoverLeavesTheGroupAfterAKill switches a member of a
// coupled group over while etcd does not answer (the proxy the sessions
// reach it through hung just before, once the master time had reached the
// member's last group), kills the promoted site with -9 before etcd answers
// its leave, and lets etcd answer: the member stays in the group, and its
// last time holds the other member's master time, until duplex promote
// serves the promoted site again, which finishes the leave; then the other
// member's master time advances again. etcd is hung by the proxy rather
// than stopped with SIGSTOP: a stopped etcd, once continued, reads the
// leave's request the kernel buffered for it and may apply it although
// the switchover gave up on it (its context's deadline), and a leave the
// killed site sent is one that reached etcd.
func TestCoupledSwitchoverLeavesTheGroupAfterAKill(t *testing.T) {
	e, s := coupledGroup(t, groupOpts{token: "e2e-coupled-switchover", frontEtcd: true})
	a, b := s[0], s[1]
	var out, errOut string
	var code int
	for try := 1; ; try++ {
		freezeAfterAGroup(t, e, a)
		code, out, errOut = runDuplex(t, "switchover", "--config", a.path, "--timeout", "20s")
		if code == 0 {
			break
		}
		e.front.Restore()
		// Refused: the secondary saw etcd hung before the switchover
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
	e.front.Restore()
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
	// b's status says so once it has read etcd again (its connection
	// the hang left is closed, and a new one made) and c2 has published a
	// time since: until then it may show c2's time from before the hang,
	// behind c1's last, as the master time, or etcd unreachable.
	var held *control.CouplingStatus
	eventually(t, time.Minute, "b's master time held by c1's last time", func() bool {
		held = b.secondaryStatus().Coupling
		return held != nil && held.Held == "" && held.Laggard == "c1"
	})
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

// freezeAfterAGroup hangs etcd's front as soon as s's secondary has
// applied a group it journaled after the call, and every group it
// journaled: the master time etcd then holds has reached the last group.
// An idle secondary still journals an empty group once a Checkpoint (a
// second), and a switchover waits for the last group acknowledged when
// its writes pause: hung at any other moment (after a fixed sleep, say),
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
	e.front.Hang()
}
