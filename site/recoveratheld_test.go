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
	"duplex/transport"
)

// Groups the secondary journaled but held unapplied (a resync) hold
// writes the primary has; recover --at to a time before them drops them
// (RecoverTo forgets the hold), and the regions its undo writes back are
// added to the promotion's changed regions, but not the regions of the
// dropped held groups. The old primary's activity log let those go once
// they were journaled, and the promotion records no held groups, so the
// rejoin copies them from neither side: the old primary keeps its write
// there, the promoted site does not have it, and the two differ after the
// copy though every pair says duplex.
func TestRecoverAtThenRejoinCopiesTheDroppedHeldGroups(t *testing.T) {
	const mib = 1 << 20
	cfg := rejoinConfig(t)
	cfg.Secondary.History = config.Duration(time.Hour)
	cfg.Secondary.HistoryBytes = 64 * config.MiB
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fwd, sec, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	ctx := context.Background()
	fill := func(b byte) []byte { return bytes.Repeat([]byte{b}, 4096) }
	applied := func(what string) {
		t.Helper()
		quiesceMover(t, prim)
		waitFor(t, time.Minute, what, func() bool { return sec.Replica().Stats().Group >= prim.Mover().Stats().Acked.Group })
	}
	if err := prim.Write(ctx, "vol3", fill(9), 2*mib); err != nil {
		t.Fatal(err)
	}
	applied("vol3's write applied")
	target := sec.Replica().Position().Time
	time.Sleep(5 * time.Millisecond)
	if err := prim.Write(ctx, "vol4", fill(5), 4*mib); err != nil {
		t.Fatal(err)
	}
	applied("vol4's write applied")
	holdByResyncOfVol1(t, prim)
	if st := sec.Replica().Stats(); st.HeldGroups == 0 {
		t.Fatal("the secondary holds no groups: the test did not hold it")
	}
	fwd.SetDown(true)
	stopPrim()
	stopSec()

	// duplex recover --at, as cmd/duplex does it: back before vol4's write.
	s, err := OpenSecondary(cfg, quiet, SecondaryOptions{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Replica().FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	st, err := s.RecoverTo(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recovered to group %d", st.Group)
	s.Close()

	pr, _, _, err := Promote(ctx, cfg, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("promoted at group %d, %d held groups", pr.Group, pr.HeldGroups)
	rev := transport.NewMemNetwork(2, transport.Faults{})
	b, _ := openReversed(t, cfg, quiet, rev)
	_, r, a := rejoinAt(t, cfg, quiet, b, rev, SecondaryOptions{})
	if _, err := b.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "every pair of the reverse direction duplex", func() bool { return allPairsDuplex(b.Status()) })
	quiesceMover(t, b)
	sameImages(t, cfg, "after the rejoin's copy", b, a)
}
