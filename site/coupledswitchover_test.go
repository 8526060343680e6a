package site

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/coupling"
	"duplex/nbd"
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
	b     *coupledPair
}

// startCoupledSwitchover starts both members, a's secondary on the disk
// opts.FS gives, and waits until both are duplex and apply through a
// master time. extra members are added to the group first.
func startCoupledSwitchover(t *testing.T, opts SecondaryOptions, extra ...string) *coupledSwitchover {
	t.Helper()
	ctx := context.Background()
	g := &coupledSwitchover{store: coupling.NewMemStore(), acfg: coupledSwitchoverConfig(t, "a"), b: &coupledPair{cfg: coupledConfig(t, "b")}}
	for _, m := range append([]string{"a", "b"}, extra...) {
		if err := g.store.AddMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	g.b.cfg.Coupling.Publish = g.acfg.Coupling.Publish
	opts.CouplingStore = g.store
	g.as = startSecondaryForSwitchoverWith(t, g.acfg, opts)
	g.ap, _ = startPrimaryForSwitchover(t, g.acfg)
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
		}
		return true
	})
	return g
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
	ctx := context.Background()
	g := startCoupledSwitchover(t, SecondaryOptions{})
	vols := g.acfg.VolumeNames()
	var acked []ackedWrite
	var werr error
	written := make(chan struct{})
	go func() {
		defer close(written)
		acked, werr = writeUntilRefused(g.ap, vols, nil)
	}()
	time.Sleep(300 * time.Millisecond)
	var res control.SwitchoverResult
	var err error
	for try := 1; ; try++ {
		if res, err = g.ap.Switchover(ctx, time.Minute); err == nil {
			break
		}
		t.Errorf("switchover %d of a coupled member: %v", try, err)
		if try == 5 {
			t.FailNow()
		}
		waitDuplex(t, g.ap)
	}
	<-written
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
	latest := map[[2]any][]byte{}
	for _, w := range acked {
		latest[[2]any{w.vol, w.off}] = w.data
	}
	for k, want := range latest {
		got := make([]byte, len(want))
		if err := prom.ReadAt(k[0].(string), got, k[1].(int64)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s at %d: the new primary lacks the last write acknowledged there (write %d, holds %d)", k[0], k[1],
				binary.BigEndian.Uint64(want), binary.BigEndian.Uint64(got))
		}
	}
	if got := g.store.MembersNow(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("members after a's switchover: %v, want [b]", got)
	}
	if v, err := g.store.Read(ctx); err != nil {
		t.Fatal(err)
	} else if r, ok := v.Reports["a"]; ok {
		t.Errorf("a's published time %s stayed in the group after its switchover", control.FormatTime(r.Time))
	}
	g.bReplicates(t, 0xb1)
}
