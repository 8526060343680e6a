package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/coupling"
)

// coupledPair is one member session of a coupled group in a site test: its
// config and its two sites, linked in memory.
type coupledPair struct {
	cfg               *config.Config
	sec               *Secondary
	prim              *Primary
	stopSec, stopPrim func()
}

// coupledConfig is linkConfig as member session of group g, with NBD for a
// promoted site to serve on.
func coupledConfig(t *testing.T, session string) *config.Config {
	t.Helper()
	cfg := linkConfig(t)
	cfg.Session = session
	cfg.Secondary.NBD = "127.0.0.1:0"
	cfg.Coupling = config.Coupling{Group: "g", Etcd: []string{"http://127.0.0.1:1"}, Lease: config.Duration(10 * time.Second),
		Publish: config.Duration(20 * time.Millisecond)}
	return cfg
}

// readVolumeFile reads a stopped site's volume image.
func readVolumeFile(t *testing.T, path string, off int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4096)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// Failover of a coupled group: both primaries are lost while the master
// time holds every member's newest groups journaled and unapplied; then
// one member's secondary stops, the master time moves on (the member that
// held it is removed), and the other applies through it. Each member's
// secondary is promoted. The group's members journaled every write, and
// one of them applied them all: every member promoted must hold them all,
// at one common time. Promoted each at the last master time it applied
// through, the member that stopped first stays at the old master time,
// without the writes the other member's writes depended on.
func TestCoupledPromotionBringsEveryMemberToOneTime(t *testing.T) {
	ctx := context.Background()
	store := coupling.NewMemStore()
	a, b := &coupledPair{cfg: coupledConfig(t, "a")}, &coupledPair{cfg: coupledConfig(t, "b")}
	for _, m := range []string{"a", "b", "other"} {
		if err := store.AddMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// The other member's time is a few seconds ahead, where it stays until
	// it is removed: the initial copies are applied before it, the writes
	// below are stamped after it.
	other := time.Now().Add(3 * time.Second).UnixNano()
	if err := store.Publish(ctx, "other", coupling.Report{Time: other, At: time.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, m := range []*coupledPair{a, b} {
		_, m.sec, m.prim, m.stopSec, m.stopPrim = linkSites(t, m.cfg, quiet, SecondaryOptions{CouplingStore: store})
	}
	for _, m := range []*coupledPair{a, b} {
		waitFor(t, time.Minute, "every pair of "+m.cfg.Session+" duplex and applied through the other member's time", func() bool {
			for _, v := range m.prim.Status().Volumes {
				if v.State != "duplex" {
					return false
				}
			}
			st := m.sec.Status()
			return st.Coupling != nil && st.Coupling.AppliedThrough == control.FormatTime(other)
		})
	}
	// A chain of dependent writes, alternating between the members: each
	// issued once the one before was acknowledged.
	type write struct {
		m   *coupledPair
		off int64
		b   byte
	}
	chain := []write{{b, 0, 1}, {a, 0, 2}, {b, 4096, 3}, {a, 4096, 4}}
	for _, w := range chain {
		if err := w.m.prim.Write(ctx, "vol1", bytes.Repeat([]byte{w.b}, 4096), w.off); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []*coupledPair{a, b} {
		qctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := m.prim.Mover().Quiesce(qctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	last := max(a.prim.Mover().Stats().Acked.Time, b.prim.Mover().Stats().Acked.Time)
	for _, m := range []*coupledPair{a, b} {
		if st := m.sec.Status(); st.Coupling == nil || st.Coupling.GatedGroups == 0 {
			t.Fatalf("%s: no group journaled past the master time: the test did not hold it", m.cfg.Session)
		}
	}
	// Both primaries are lost; each member has published its time
	// through the last of the writes.
	a.stopPrim()
	b.stopPrim()
	for _, m := range []*coupledPair{a, b} {
		waitFor(t, time.Minute, m.cfg.Session+" publishes a time past the writes", func() bool {
			v, err := store.Read(ctx)
			return err == nil && v.Reports[m.cfg.Session].Time >= m.prim.Mover().Stats().Acked.Time
		})
	}
	// b's secondary stops at the old master time; the group moves on
	// without the other member, and a applies through every write.
	b.stopSec()
	if err := store.RemoveMember(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "a applies through the writes", func() bool {
		return a.sec.Replica().Stats().Group >= a.prim.Mover().Stats().Acked.Group
	})
	a.stopSec()

	var promoted []int64
	for _, m := range []*coupledPair{a, b} {
		pr, _, recovered, err := PromoteWith(ctx, m.cfg, quiet, PromoteOptions{CouplingStore: store})
		if err != nil {
			t.Fatalf("promote %s: %v", m.cfg.Session, err)
		}
		t.Logf("%s promoted at group %d, time %s, %d held groups", m.cfg.Session, pr.Group, control.FormatTime(pr.ConsistencyTime), pr.HeldGroups)
		promoted = append(promoted, pr.ConsistencyTime)
		v, err := store.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v.Recovery == 0 || recovered.Coupling == nil || recovered.Coupling.RecoveryTime != control.FormatTime(v.Recovery) {
			t.Errorf("%s promoted: coupling %+v, want the group's recovery time %s named", m.cfg.Session, recovered.Coupling, control.FormatTime(v.Recovery))
		}
		if pr.ConsistencyTime > v.Recovery {
			t.Errorf("%s promoted at %s, past the group's recovery time %s", m.cfg.Session, control.FormatTime(pr.ConsistencyTime), control.FormatTime(v.Recovery))
		}
	}
	for _, w := range chain {
		got := readVolumeFile(t, w.m.cfg.Secondary.Volumes[0].Path, w.off)
		if !bytes.Equal(got, bytes.Repeat([]byte{w.b}, 4096)) {
			t.Errorf("%s's promoted volume lacks write %d (every member journaled it, and the group's master time passed it, %s): "+
				"the members are at %s and %s", w.m.cfg.Session, w.b, control.FormatTime(last),
				control.FormatTime(promoted[0]), control.FormatTime(promoted[1]))
		}
	}
}
