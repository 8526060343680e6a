package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"duplex/coupling"
)

// coupleAddKilledBeforeItsFloor runs duplex couple add of s, which
// makes the membership and stops before it publishes the session's floor
// (AddStopFileEnv), and kills it -9 there.
func coupleAddKilledBeforeItsFloor(t *testing.T, s *procSession) {
	t.Helper()
	stop := filepath.Join(t.TempDir(), "member-made")
	cmd := exec.Command(duplexBinary(t), "couple", "add", "--config", s.path)
	cmd.Env = append(os.Environ(), "DUPLEX_COUPLE_ADD_STOP_FILE="+stop)
	out := filepath.Join(t.TempDir(), "couple-add.out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	eventually(t, time.Minute, "couple add making the membership", func() bool {
		select {
		case <-done:
			t.Fatalf("duplex couple add exited before it made the membership:\n%s", readLog(out))
		default:
		}
		_, err := os.Stat(stop)
		return err == nil
	})
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// duplex couple add killed -9 between making the member and publishing its
// floor leaves the add to be finished at the others' times as of the
// membership it made: c2, whose secondary is stopped, made writes since
// (the chain's writes to it, each acknowledged before the next write, to
// c1, was issued), and c1's secondary journaled its own, past them.
// couple add run again gave c2 the others' times as of its second run,
// past c2's writes; c1 applied its writes that depended on them, and the
// two secondaries recovered with --coupled held c1's writes without the
// c2 writes they depended on. c2's secondary started again published its
// own time, never given under its membership (it is no floor for another
// add, and couple list says the add is not finished). Finished, the
// group's master time advances.
//
// Once etcd compacted its history past the add, the others' times then
// are lost: couple add run again gave c2 the others' times now, past
// c2's writes its stopped secondary had not journaled, as the first case
// did. It must refuse, saying what c2's secondary journaled and what to
// do, and c2's secondary, started, finishes the add at its own time once
// it journaled past the others' time. Started while c2's primary sends
// nothing (stopped), it waits, and c1 applies none of the chain's writes
// meanwhile, also once it was killed -9 and started again; the primary
// continued, it finishes the add.
func TestCoupleAddKilledBeforeItsFloorIsFinished(t *testing.T) {
	t.Run("by couple add run again", func(t *testing.T) { coupleAddKilled(t, false, false, false) })
	t.Run("by the member's secondary", func(t *testing.T) { coupleAddKilled(t, true, false, false) })
	t.Run("by the member's secondary, etcd compacted past the add", func(t *testing.T) { coupleAddKilled(t, true, true, false) })
	t.Run("by the member's secondary killed -9 while it waits, etcd compacted past the add", func(t *testing.T) { coupleAddKilled(t, true, true, true) })
}

func coupleAddKilled(t *testing.T, bySecondary, compacted, killedWaiting bool) {
	e, s := coupledPair(t, true)
	store, err := coupling.DialEtcd(coupling.EtcdConfig{Group: "payments", Endpoints: []string{e.url}, Lease: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// c2 leaves the group, membership and time (as a switchover's leave
	// does), its secondary running on publishes its time outside the
	// group, then stops: that time stays in etcd, behind what c1 applies
	// alone.
	v, err := store.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Leave(ctx, "c2", v.Memberships["c2"]); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "c2's time published outside the group", func() bool {
		v, err := store.Read(ctx)
		return err == nil && v.Reports["c2"].Membership == coupling.Outside
	})
	s[1].stopSecondary()
	coupleAddKilledBeforeItsFloor(t, s[1])
	if v, err = store.Read(ctx); err != nil {
		t.Fatal(err)
	}
	if len(v.Members) != 2 || v.Given("c2") {
		t.Fatalf("after couple add was killed: members %v, c2's time %+v under membership %q; want c2 a member without its floor",
			v.Members, v.Reports["c2"], v.Memberships["c2"])
	}
	// The chain's writes, after the add: c2's are acknowledged by its
	// primary and held there; c1's secondary journals c1's and publishes
	// a time past them.
	const writes = 300
	chainStart := time.Now()
	c := startChain(t, s, writes)
	eventually(t, time.Minute, "writes acknowledged", func() bool { return c.acked.Load() == writes })
	passed := time.Now()
	eventually(t, time.Minute, "c1's published time past the chain's writes", func() bool {
		v, err := store.Read(ctx)
		return err == nil && time.Unix(0, v.Reports["c1"].Time).After(passed)
	})
	if err := c.finish(); err != nil {
		t.Fatal(err)
	}
	if compacted {
		compactEtcd(ctx, t, e.url)
		code, out, errs := runDuplex(t, "couple", "add", "--config", s[1].path)
		if code == 0 || !strings.Contains(errs, "it journaled through") || !strings.Contains(errs, "duplex couple remove --config FILE c2") {
			t.Errorf("duplex couple add run again once etcd compacted past the add, c2's secondary stopped: exit %d\n%s%s\n"+
				"want it refused, saying what c2's secondary journaled and what to do", code, out, errs)
		}
		if v, err := store.Read(ctx); err != nil || v.Given("c2") {
			t.Fatalf("after couple add refused: c2's time %+v under membership %q, %v; want it not given", v.Reports["c2"], v.Memberships["c2"], err)
		}
	}
	if killedWaiting {
		// c2's primary, stopped, sends nothing: c2's secondary stays
		// behind the others, journaled through before the chain, and
		// waits; killed -9 there and started again, it waits on.
		if err := s[1].prim.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			s[1].startSecondary()
			eventually(t, time.Minute, "c2's secondary saying its add waits for it", func() bool {
				st := s[1].secondaryStatus()
				return st.Coupling != nil && strings.Contains(st.Coupling.AddUnfinished, "finishes the add once it journaled past")
			})
			time.Sleep(time.Second)
			st := s[0].secondaryStatus()
			if at, err := time.Parse(time.RFC3339Nano, st.Coupling.AppliedThrough); err != nil || !at.Before(chainStart) {
				t.Errorf("c1 applies through %q (%v) while c2's secondary, which journaled none of the chain's writes, waits (start %d): "+
					"want before the chain began (%s)", st.Coupling.AppliedThrough, err, i, chainStart.UTC().Format(time.RFC3339Nano))
			}
			if v, err := store.Read(ctx); err != nil || v.Given("c2") {
				t.Fatalf("c2's time %+v under membership %q, %v, while its secondary waits: want it not given", v.Reports["c2"], v.Memberships["c2"], err)
			}
			if i == 0 {
				s[1].sec.kill()
			}
		}
		if err := s[1].prim.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	} else if bySecondary {
		s[1].startSecondary()
	} else if code, out, errs := runDuplex(t, "couple", "add", "--config", s[1].path); code != 0 {
		t.Fatalf("duplex couple add run again: exit %d\n%s%s", code, out, errs)
	}
	eventually(t, time.Minute, "c2's time given its floor under its membership", func() bool {
		v, err := store.Read(ctx)
		return err == nil && v.Given("c2")
	})
	eventually(t, time.Minute, "c1's master time advancing once the add is finished", func() bool {
		st := s[0].secondaryStatus()
		if st.Coupling == nil || st.Coupling.Held != "" || len(st.Coupling.Members) != 2 {
			return false
		}
		// With c2's secondary running, past the chain's writes.
		mt, err := time.Parse(time.RFC3339Nano, st.Coupling.AppliedThrough)
		return err == nil && (!bySecondary || mt.After(passed))
	})
	out := recoverAll(t, [2]*procSession(s), true)
	prefix, violations := chainPrefix(t, [2]*procSession(s), writes)
	t.Logf("%d writes acknowledged; recovered a prefix of %d; %d violations\n%s", writes, prefix, len(violations), out)
	for _, v := range violations[:min(len(violations), 10)] {
		t.Error(v)
	}
	if len(violations) > 0 {
		t.Fatalf("%d writes held past the prefix of %d", len(violations), prefix)
	}
	if bySecondary && prefix != writes {
		t.Errorf("recovered a prefix of %d writes once c2's secondary journaled them, and the master time passed them: want all %d", prefix, writes)
	}
	if got := strings.Count(out, "coupled group payments: recovered to the group's time"); got != 2 {
		t.Errorf("recover --coupled printed the group's time %d times, want once per member:\n%s", got, out)
	}
}

// compactEtcd compacts etcd's history at url to its current revision.
func compactEtcd(ctx context.Context, t *testing.T, url string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "compact")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
}
