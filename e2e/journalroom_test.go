package e2e

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/pair"
	"duplex/site"
)

// TestResyncRefusedWithoutJournalRoom: a secondary whose journal file
// system cannot hold a resync (a fake free-space function) makes the primary
// refuse to start it, with a message that names both numbers and the way
// out; with --inconsistent, or once the secondary restarts with room (its
// Welcome brings no new group, only the new free space), the resync runs.
func TestResyncRefusedWithoutJournalRoom(t *testing.T) {
	t.Parallel()
	const volSize = 1 << 20
	cfg := newOpsConfig(t, volSize, 256<<10, time.Minute)
	var free atomic.Uint64
	free.Store(1 << 20) // less than the 1 MiB resync with the writes during it
	s := &opsSession{t: t, cfg: cfg, net: newMemNet()}
	secOpts := site.SecondaryOptions{JournalFree: func() (uint64, error) { return free.Load(), nil }}
	s.startSecondaryWith(secOpts)
	s.startPrimary()
	t.Cleanup(func() {
		s.stopPrimary()
		s.stopSecondary()
	})
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	pm := s.prim.Pairs()
	suspendAndWrite := func() {
		if err := pm.Suspend("vol2"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		for i := range volSize / 4096 {
			buf[0] = byte(i)
			if err := s.prim.Write(t.Context(), "vol2", buf, int64(i)*4096); err != nil {
				t.Fatal(err)
			}
			// Acknowledged groups carry the secondary's free space.
			if err := s.prim.Write(t.Context(), "vol1", buf, int64(i)*4096); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The secondary reports its free space less what its journal keeps
	// for itself (1: no room at all).
	awaitFree := func(free uint64) uint64 {
		want := uint64(1)
		if r := uint64(s.sec.Replica().JournalReserve()); free > r {
			want = free - r
		}
		waitFor(t, 30*time.Second, fmt.Sprintf("the secondary reporting %d bytes of room", want), func() bool {
			return s.prim.Mover().Stats().Acked.JournalFree == want
		})
		return want
	}

	suspendAndWrite()
	room := awaitFree(1 << 20)
	err := pm.Resume("vol2")
	if err == nil {
		t.Fatal("a resync started although the secondary's journal has 1 MiB free")
	}
	if !errors.Is(err, pair.ErrNoJournalRoom) || !strings.Contains(err.Error(), fmt.Sprintf("room for %d bytes", room)) ||
		!strings.Contains(err.Error(), "--inconsistent") || !strings.Contains(err.Error(), "needs about ") {
		t.Fatalf("refusal does not name both numbers and the way out: %v", err)
	}
	if p := s.pairs()["vol2"]; p.State != pair.Suspended || p.Waiting == "" {
		t.Fatalf("after the refusal vol2 is %s (waiting %q), want suspended saying why", p.State, p.Waiting)
	}

	// Accepting an inconsistent resync: it runs, and the secondary does not
	// hold its volumes for it.
	if err := pm.ResumeInconsistent("vol2"); err != nil {
		t.Fatal(err)
	}
	s.waitState("vol2", pair.Duplex, time.Minute)
	if st := s.sec.Replica().Stats(); st.HeldGroups != 0 || len(st.Resyncing) != 0 {
		t.Errorf("inconsistent resync held the secondary: %d groups, resyncing %v", st.HeldGroups, st.Resyncing)
	}

	// The operator frees space and restarts the secondary: its Welcome
	// carries no new group, yet its free space replaces the old figure, and
	// a consistent resync starts.
	suspendAndWrite()
	awaitFree(1 << 20)
	if err := pm.Resume("vol2"); !errors.Is(err, pair.ErrNoJournalRoom) {
		t.Fatalf("resume with 1 MiB free: %v, want the refusal", err)
	}
	s.stopSecondary()
	free.Store(1 << 40)
	s.startSecondaryWith(secOpts)
	awaitFree(1 << 40)
	if err := pm.Resume("vol2"); err != nil {
		t.Fatalf("resume with 1 TiB free: %v", err)
	}
	s.waitState("vol2", pair.Duplex, time.Minute)
	s.assertImagesEqual()
}
