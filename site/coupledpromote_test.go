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
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := holdPastTheMasterTime(t, cfg, quiet)
	store, stopSec, stopPrim := h.store, h.stopSec, h.stopPrim
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

// heldMember is a coupled session's two sites whose secondary journaled
// writes past the master time, which another member holds.
type heldMember struct {
	store             *coupling.MemStore
	sec               *Secondary
	prim              *Primary
	stopSec, stopPrim func()
	// other is the master time: the other member's time, which it keeps.
	other int64
}

// holdPastTheMasterTime couples cfg's session with a member "other" whose
// time is a few seconds ahead and stays there: the initial copies are
// applied before it, and four writes to vol1 stamped after it are
// journaled and acknowledged, and held.
func holdPastTheMasterTime(t *testing.T, cfg *config.Config, log *slog.Logger) heldMember {
	t.Helper()
	cfg.Coupling = config.Coupling{Group: "g", Etcd: []string{"http://127.0.0.1:1"}, Lease: config.Duration(10 * time.Second),
		Publish: config.Duration(20 * time.Millisecond)}
	ctx := context.Background()
	h := heldMember{store: coupling.NewMemStore(), other: time.Now().Add(3 * time.Second).UnixNano()}
	for _, m := range []string{cfg.Session, "other"} {
		if err := h.store.AddMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.store.Publish(ctx, "other", coupling.Report{Time: h.other, At: time.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	_, h.sec, h.prim, h.stopSec, h.stopPrim = linkSites(t, cfg, log, SecondaryOptions{CouplingStore: h.store})
	waitFor(t, time.Minute, "every pair duplex and applied through the other member's time", func() bool {
		for _, v := range h.prim.Status().Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		st := h.sec.Status()
		return st.Coupling != nil && st.Coupling.AppliedThrough == control.FormatTime(h.other)
	})
	for i := range 4 {
		if err := h.prim.Write(ctx, "vol1", bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "the writes journaled past the master time", func() bool {
		st := h.sec.Status()
		return st.Coupling != nil && st.Coupling.GatedGroups > 0 && h.prim.Mover().Stats().Acked.Time > h.other
	})
	return h
}
