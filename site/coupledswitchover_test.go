package site

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/coupling"
	"duplex/nbd"
	"duplex/transport"
)

// coupledSwitchoverConfig is switchoverConfig as member session of group
// g. Its publish round is long next to the pause of a switchover, so that
// the master time reaches the member's last group a round or more after
// its primary heard it journaled.
func coupledSwitchoverConfig(t *testing.T, session string) *config.Config {
	t.Helper()
	cfg := switchoverConfig(t)
	cfg.Session = session
	cfg.Coupling = config.Coupling{Group: "g", Etcd: []string{"http://127.0.0.1:1"}, Lease: config.Duration(10 * time.Second),
		Publish: config.Duration(200 * time.Millisecond)}
	return cfg
}

// coupledSwitchover is a coupled group of two members in a site test: a,
// running as duplex secondary and duplex primary run it, to be switched
// over, and b, linked in memory, which goes on replicating.
type coupledSwitchover struct {
	store *coupling.MemStore
	acfg  *config.Config
	as    *runningSecondary
	ap    *Primary
	// stopAP stops a's primary.
	stopAP func() error
	b      *coupledPair
}

// coupledSwitchoverOpts shape the group startCoupledSwitchover starts.
type coupledSwitchoverOpts struct {
	// aStore, if set, is the store a's secondary sees, given the group's.
	aStore func(*coupling.MemStore) coupling.Store
	// other, if set, is the time of a third member, "other", which only
	// the test publishes.
	other int64
}

// startCoupledSwitchover starts both members and waits until both are
// duplex and apply through a master time.
func startCoupledSwitchover(t *testing.T, o coupledSwitchoverOpts) *coupledSwitchover {
	t.Helper()
	ctx := context.Background()
	g := &coupledSwitchover{store: coupling.NewMemStore(), acfg: coupledSwitchoverConfig(t, "a"), b: &coupledPair{cfg: coupledConfig(t, "b")}}
	members := []string{"a", "b"}
	if o.other != 0 {
		members = append(members, "other")
		if err := g.store.Publish(ctx, "other", coupling.Report{Time: o.other, At: time.Now().UnixNano()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		if err := g.store.AddMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	g.b.cfg.Coupling.Publish = g.acfg.Coupling.Publish
	var aStore coupling.Store = g.store
	if o.aStore != nil {
		aStore = o.aStore(g.store)
	}
	g.as = startSecondaryForSwitchoverWith(t, g.acfg, SecondaryOptions{CouplingStore: aStore})
	g.ap, g.stopAP = startPrimaryForSwitchover(t, g.acfg)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, g.b.sec, g.b.prim, g.b.stopSec, g.b.stopPrim = linkSites(t, g.b.cfg, quiet, SecondaryOptions{CouplingStore: g.store})
	waitDuplex(t, g.ap)
	waitFor(t, time.Minute, "b's pairs duplex, and both secondaries applying through a master time", func() bool {
		if !allPairsDuplex(g.b.prim.Status()) {
			return false
		}
		for _, st := range []control.Status{g.as.Status(), g.b.sec.Status()} {
			if st.Coupling == nil || st.Coupling.Held != "" || st.Coupling.AppliedThrough == "" {
				return false
			}
			for _, v := range st.Volumes {
				if v.ConsistencyTime == "" { // the initial copy not applied whole yet
					return false
				}
			}
		}
		return true
	})
	return g
}

// switchOver switches a over under a writer, and checks that the new
// primary holds every write a's primary acknowledged.
func (g *coupledSwitchover) switchOver(t *testing.T) {
	t.Helper()
	wr := startWriter(g.ap, g.acfg.VolumeNames(), nil)
	wr.waitAcked(t, 64)
	var res control.SwitchoverResult
	var err error
	for try := 1; ; try++ {
		if res, err = g.ap.Switchover(context.Background(), time.Minute); err == nil {
			break
		}
		t.Errorf("switchover %d of a coupled member: %v", try, err)
		if try == 5 {
			t.FailNow()
		}
		waitDuplex(t, g.ap)
	}
	acked, werr := wr.wait()
	var errno nbd.Errno
	if !errors.As(werr, &errno) || errno != nbd.ESHUTDOWN {
		t.Errorf("the writer's first refused write: %v, want ESHUTDOWN", werr)
	}
	var prom *Promoted
	select {
	case prom = <-g.as.promotedUp:
	case <-g.as.done:
		t.Fatalf("a's secondary ended with %v, and no promoted site serves", g.as.err)
	}
	t.Logf("%d writes acknowledged; pause %.3fs, group %d", len(acked), res.PauseSeconds, res.Group)
	holdsLastAcked(t, prom, acked)
}

// aLeft fails unless a is out of the group, its published time with it.
func (g *coupledSwitchover) aLeft(t *testing.T) {
	t.Helper()
	if got := g.store.MembersNow(); slices.Contains(got, "a") {
		t.Errorf("members after a's switchover: %v, want a gone", got)
	}
	if v, err := g.store.Read(context.Background()); err != nil {
		t.Fatal(err)
	} else if r, ok := v.Reports["a"]; ok {
		t.Errorf("a's published time %s stayed in the group after its switchover", control.FormatTime(r.Time))
	}
}

// bReplicates fails unless a write to b's primary reaches b's secondary's
// volume: the group's master time moves for b.
func (g *coupledSwitchover) bReplicates(t *testing.T, fill byte) {
	t.Helper()
	vol, data := g.b.cfg.VolumeNames()[0], bytes.Repeat([]byte{fill}, 4096)
	if err := g.b.prim.Write(context.Background(), vol, data, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "b's secondary applying a write to b", func() bool {
		got := make([]byte, len(data))
		return g.b.sec.ReadAt(vol, got, 0) == nil && bytes.Equal(got, data)
	})
}

// A planned switchover of a member of a coupled group, under a writer: it
// goes through the first time, the new primary holds every write the old
// one acknowledged, and the member leaves the group, its published time
// with it, so that the other member's secondary goes on applying. The
// switchover fenced before the master time reached the member's last
// group, a publish round behind its journal, and was refused ("fenced at
// group N, short of group N+1"); once it went through, on a retry, the
// member's last time stayed in the group and held the master time there,
// and the other member applied nothing more until duplex couple remove.
func TestCoupledSwitchoverAppliesEverythingAndLeavesTheGroup(t *testing.T) {
	g := startCoupledSwitchover(t, coupledSwitchoverOpts{})
	g.switchOver(t)
	g.aLeft(t)
	g.bReplicates(t, 0xb1)
}

// A member whose time stays behind (silent, not removed) holds the master
// time short of the last write a's primary acknowledged: the switchover is
// refused, nothing changed (a stays a member, linked, its writes go on),
// naming the member: at once once its lease expired, else after a wait
// with the writes held. Once that member is removed from the group, the
// switchover goes through.
func TestCoupledSwitchoverRefusedWhileAMemberHoldsTheMasterTime(t *testing.T) {
	defer func(d time.Duration) { coupledApplyWait = d }(coupledApplyWait)
	coupledApplyWait = time.Second
	// Ahead while the initial copies are applied, then behind, where it
	// stays.
	g := startCoupledSwitchover(t, coupledSwitchoverOpts{other: time.Now().Add(time.Hour).UnixNano()})
	other := time.Now().UnixNano()
	g.store.Set("other", coupling.Report{Time: other, At: other})
	vol := g.acfg.VolumeNames()[0]
	// Its lease expired, it is refused at once, the writes never held.
	g.store.Expire("other")
	waitFor(t, time.Minute, "a's secondary seeing the other member gone", func() bool {
		st := g.as.Status()
		return st.Coupling != nil && st.Coupling.LaggardGone
	})
	_, err := g.ap.Switchover(context.Background(), time.Minute)
	if err == nil {
		t.Fatal("the switchover went through with a member gone holding the master time")
	}
	wantWords(t, "the refusal with the member gone", err.Error(), "refused, nothing changed", "member other", "is gone", "duplex couple remove other")
	// Alive again (its lease renewed, its time as it was), it is waited
	// for, the writes held, and then refused.
	if err := g.store.Publish(context.Background(), "other", coupling.Report{Time: other, At: time.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "a's secondary seeing the other member alive", func() bool {
		st := g.as.Status()
		return st.Coupling != nil && !st.Coupling.LaggardGone && st.Coupling.Laggard == "other"
	})
	if err := g.ap.Write(context.Background(), vol, bytes.Repeat([]byte{0xa1}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	_, err = g.ap.Switchover(context.Background(), time.Minute)
	if err == nil {
		t.Fatal("the switchover went through with the master time held short of the primary's last write")
	}
	wantWords(t, "the refusal", err.Error(), "writes resume", "member other's time", "duplex couple remove")
	if err := g.ap.Write(context.Background(), vol, bytes.Repeat([]byte{0xa2}, 4096), 0); err != nil {
		t.Errorf("a write after the refusal: %v", err)
	}
	if st := g.as.Status(); st.Role != "secondary" || st.Fenced || !slices.Contains(g.store.MembersNow(), "a") {
		t.Fatalf("after the refusal: role %s, fenced %v, members %v; want a linked secondary, a member", st.Role, st.Fenced, g.store.MembersNow())
	}
	if err := g.store.RemoveMember(context.Background(), "other"); err != nil {
		t.Fatal(err)
	}
	g.switchOver(t)
	g.aLeft(t)
	g.bReplicates(t, 0xb2)
}

// leaveFails is a's view of the group's store, in which leaving fails the
// first times, as an etcd that does not answer.
type leaveFails struct {
	*coupling.MemStore
	fail  atomic.Int32
	calls atomic.Int32
}

func newLeaveFails(m *coupling.MemStore, fail int32) *leaveFails {
	l := &leaveFails{MemStore: m}
	l.fail.Store(fail)
	return l
}

func (l *leaveFails) Leave(ctx context.Context, member, membership string) error {
	if l.calls.Add(1) <= l.fail.Load() {
		return fmt.Errorf("%w: injected", coupling.ErrUnreachable)
	}
	return l.MemStore.Leave(ctx, member, membership)
}

// A switched-over member that cannot leave its group at once (etcd does
// not answer) is promoted all the same, and leaves once etcd answers: the
// other member is held only meanwhile.
func TestCoupledSwitchoverLeavesTheGroupOnceEtcdAnswers(t *testing.T) {
	var lf *leaveFails
	g := startCoupledSwitchover(t, coupledSwitchoverOpts{aStore: func(m *coupling.MemStore) coupling.Store {
		lf = newLeaveFails(m, 2)
		return lf
	}})
	g.switchOver(t)
	waitFor(t, 30*time.Second, "a out of the group", func() bool { return !slices.Contains(g.store.MembersNow(), "a") })
	if n := lf.calls.Load(); n < 3 {
		t.Errorf("a left after %d attempts, want 3 (two failed)", n)
	}
	g.aLeft(t)
	g.bReplicates(t, 0xb3)
}

// A switched-over member whose leave etcd does not answer, and whose
// promoted site then stops before it does, leaves the group once the
// promoted site runs again (duplex promote after a restart) and etcd
// answers. The leave was tried again only in memory: the restarted site
// stayed a member, its last time holding the other member's master time
// for ever.
func TestCoupledSwitchoverLeavesTheGroupAfterARestart(t *testing.T) {
	var lf *leaveFails
	g := startCoupledSwitchover(t, coupledSwitchoverOpts{aStore: func(m *coupling.MemStore) coupling.Store {
		lf = newLeaveFails(m, math.MaxInt32)
		return lf
	}})
	g.switchOver(t)
	if n := lf.calls.Load(); n < 1 {
		t.Fatalf("the switchover never asked to leave (%d calls)", n)
	}
	// The promoted site stops before etcd answered its leave.
	g.as.stop()
	<-g.as.done
	if got := g.store.MembersNow(); !slices.Contains(got, "a") {
		t.Fatalf("members %v: a left although etcd never answered", got)
	}
	// duplex promote serves the promoted site again; etcd answers.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := OpenPromoted(g.acfg, quiet, PromotedOptions{CouplingStore: g.store})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 30*time.Second, "a out of the group once its promoted site runs again", func() bool { return !slices.Contains(g.store.MembersNow(), "a") })
	g.aLeft(t)
	g.bReplicates(t, 0xb4)
}

// A switched-over member whose leave etcd does not answer, and which is
// made a member again meanwhile (duplex couple add), keeps that new
// membership once etcd answers the leave owed: the leave takes out only
// the membership it was meant for. It took the new one out, and the
// member's time with it.
func TestCoupledSwitchoverLeaveOwedSparesALaterMembership(t *testing.T) {
	var lf *leaveFails
	g := startCoupledSwitchover(t, coupledSwitchoverOpts{aStore: func(m *coupling.MemStore) coupling.Store {
		lf = newLeaveFails(m, math.MaxInt32)
		return lf
	}})
	g.switchOver(t)
	ctx := context.Background()
	if err := g.store.RemoveMember(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := coupling.Add(ctx, g.store, "a", time.Now()); err != nil {
		t.Fatal(err)
	}
	lf.fail.Store(0)
	waitFor(t, 30*time.Second, "the leave owed done", func() bool {
		_, ok, err := readPendingLeave(nil, g.acfg)
		return !ok && err == nil
	})
	if got := g.store.MembersNow(); !slices.Contains(got, "a") {
		t.Fatalf("members %v once the leave owed was done: a's membership added after the switchover was taken out", got)
	}
}

// A leave owed by a switchover that never took over (the process died
// after its record of the leave, before the promotion's) is void: the
// secondary's start removes it, so that no later promotion, a failover
// that keeps the member in its group, finds it.
func TestCoupledSwitchoverLeaveOwedIsVoidWithoutThePromotion(t *testing.T) {
	cfg := coupledSwitchoverConfig(t, "a")
	if err := os.MkdirAll(filepath.Dir(StatePath(cfg)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writePendingLeave(nil, cfg, ""); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSecondary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{CouplingStore: coupling.NewMemStore()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok, err := readPendingLeave(nil, cfg); ok || err != nil {
		t.Errorf("the leave owed after a start without a promotion: %v, %v; want none", ok, err)
	}
}

// After a member's switchover, the rejoin of its old primary as the
// promoted site's secondary couples the session again, in its new
// direction, as a member without a time: its secondary applies through the
// group's master time, and the other member goes on applying. The
// rejoined secondary reported "not a member" and applied nothing, the
// rejoin's copy with it, until duplex couple add by hand.
func TestCoupledSwitchoverRejoinCouplesTheSessionAgain(t *testing.T) {
	g := startCoupledSwitchover(t, coupledSwitchoverOpts{})
	g.switchOver(t)
	waitFor(t, 30*time.Second, "a out of the group", func() bool { return !slices.Contains(g.store.MembersNow(), "a") })
	// The old primary stops, and so does the promoted site, which then
	// serves as the primary of the reverse direction.
	g.stopAP()
	g.as.stop()
	<-g.as.done
	cfg := g.acfg
	cfg.Primary.Listen, cfg.Primary.Journal = "127.0.0.1:0", filepath.Join(cfg.Dir, "primary", "journal")
	cfg.Secondary.NBD, cfg.Secondary.Control = "127.0.0.1:0", "127.0.0.1:0"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rev := transport.NewMemNetwork(2, transport.Faults{})
	opts := linkOptions(rev)
	opts.CouplingStore = g.store
	rp, err := OpenReversePrimary(cfg, quiet, opts)
	if err != nil {
		t.Fatal(err)
	}
	runLinked(t, rp)
	_, r, a := rejoinAt(t, cfg, quiet, rp, rev, SecondaryOptions{CouplingStore: g.store})
	if _, err := rp.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "a a member again, its secondary applying through a master time", func() bool {
		st := a.Status()
		return slices.Contains(g.store.MembersNow(), "a") && st.Coupling != nil && st.Coupling.Held == "" && st.Coupling.AppliedThrough != ""
	})
	waitFor(t, time.Minute, "every pair of the reverse direction duplex", func() bool { return allPairsDuplex(rp.Status()) })
	vol, data := cfg.VolumeNames()[0], bytes.Repeat([]byte{0xa5}, 4096)
	if err := rp.Write(context.Background(), vol, data, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the old primary applying a write of the promoted site", func() bool {
		got := make([]byte, len(data))
		return a.ReadAt(vol, got, 0) == nil && bytes.Equal(got, data)
	})
	g.bReplicates(t, 0xb5)
	if _, ok, err := readOwed(nil, joinPath(func() *config.Config { c, _ := cfg.Reversed(); return c }())); ok || err != nil {
		t.Errorf("the join owed after the session joined: %v, %v; want none", ok, err)
	}
}

// A rejoin waits while the site it rejoins owes its coupled group the
// leave of its switchover: coupled again first, the session would lose its
// new membership to that leave once etcd answers.
func TestRejoinRefusedWhileTheLeaveIsOwed(t *testing.T) {
	cfg := coupledSwitchoverConfig(t, "a")
	cfg.Primary.Listen, cfg.Primary.Journal = "127.0.0.1:0", filepath.Join(cfg.Dir, "primary", "journal")
	_, err := PlanRejoin(cfg, control.Changes{CouplingLeaveOwed: "g"})
	if err == nil {
		t.Fatal("the rejoin was planned while the other site owes its group the leave")
	}
	wantWords(t, "the refusal", err.Error(), "has not left coupled group \"g\"", "duplex couple list", "run duplex rejoin again")
}
