package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/coupling"
)

// A coupled secondary promoted while its group's master time holds it
// fences at the master time: the groups it journaled past it are never
// applied, and its old primary's activity log let their regions go once
// they were acknowledged, so the promotion records them as held, and the
// reverse direction reads their regions from the journal (addHeldRegions)
// for the rejoin to copy back. It recorded only a resync's held groups.
func TestPromotionCountsTheGroupsPastTheMasterTime(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Coupling = config.Coupling{Group: "g", Etcd: []string{"http://127.0.0.1:1"}, Lease: config.Duration(10 * time.Second),
		Publish: config.Duration(20 * time.Millisecond)}
	ctx := context.Background()
	store := coupling.NewMemStore()
	for _, m := range []string{cfg.Session, "other"} {
		if err := store.AddMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// The other member's time is a few seconds ahead, where it then
	// stays: the initial copies are applied before it, the writes below
	// are stamped after it.
	other := time.Now().Add(3 * time.Second).UnixNano()
	if err := store.Publish(ctx, "other", coupling.Report{Time: other, At: time.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, sec, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{CouplingStore: store})
	waitFor(t, time.Minute, "every pair duplex and applied through the other member's time", func() bool {
		for _, v := range prim.Status().Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		st := sec.Status()
		return st.Coupling != nil && st.Coupling.AppliedThrough == control.FormatTime(other)
	})
	for i := range 4 {
		if err := prim.Write(ctx, "vol1", bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "the writes journaled past the master time", func() bool {
		st := sec.Status()
		return st.Coupling != nil && st.Coupling.GatedGroups > 0 && prim.Mover().Stats().Acked.Time > other
	})
	stopPrim()
	stopSec()

	s, err := OpenSecondary(cfg, quiet, SecondaryOptions{Offline: true, CouplingStore: store})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	journaled := s.Replica().Stats().JournaledGroup
	pr, _, err := promoteOpen(cfg, s, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if journaled <= pr.Group {
		t.Fatalf("promoted at group %d with group %d journaled: the test did not hold the secondary", pr.Group, journaled)
	}
	if want := journaled - pr.Group; pr.HeldGroups != want {
		t.Fatalf("the promotion at group %d records %d held groups; %d were journaled after it and never applied", pr.Group, pr.HeldGroups, want)
	}
}
