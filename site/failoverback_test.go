package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"duplex/control"
	"duplex/transport"
)

// TestFailoverBackAndASecondRoundTrip runs the way back by a failover, and
// then a second failover, through the sites, in the same state
// directories: A fails over to B; A rejoins, and B is lost in the middle
// of the copy (groups held at A, A's volumes its own image); A fails over
// back (PromoteBack) and serves; B rejoins A, its writes A never had
// discarded, and the two end identical; then A is lost, B fails over
// again, A rejoins B again, and the two end identical again.
func TestFailoverBackAndASecondRoundTrip(t *testing.T) {
	const mib = 1 << 20
	cfg := rejoinConfig(t)
	cfg.Primary.NBD = "127.0.0.1:0"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	fill := func(b byte) []byte { return bytes.Repeat([]byte{b}, 4096) }
	allDuplex := func(p *Primary) bool {
		st := p.Status()
		return allPairsDuplex(st) && st.Link == "connected"
	}
	write := func(p *Primary, vol string, b byte, off int64) {
		t.Helper()
		if err := p.Write(ctx, vol, fill(b), off); err != nil {
			t.Fatalf("write %s at %d: %v", vol, off, err)
		}
	}
	byteAt := func(read func(string, []byte, int64) error, vol string, off int64) byte {
		t.Helper()
		b := make([]byte, 1)
		if err := read(vol, b, off); err != nil {
			t.Fatal(err)
		}
		return b[0]
	}

	// A replicates to B; A writes two regions B never sees, and is lost.
	fwd := transport.NewMemNetwork(1, transport.Faults{})
	bSec, err := OpenSecondary(cfg, quiet, SecondaryOptions{Listener: fwd})
	if err != nil {
		t.Fatal(err)
	}
	stopB := runFor(t, bSec.Run)
	a, err := OpenPrimary(cfg, quiet, linkOptions(fwd))
	if err != nil {
		t.Fatal(err)
	}
	stopA := runLinked(t, a)
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allDuplex(a) })
	write(a, "vol1", 1, 0)
	quiesceMover(t, a)
	fwd.SetDown(true)
	write(a, "vol1", 2, 5*mib)
	write(a, "vol1", 2, 7*mib)
	stopA()
	stopB()

	// Failover to B, which writes; A rejoins; B's copy is slow, and B
	// writes while it runs (journaled at A, held there): then B is lost.
	if _, _, _, err := Promote(ctx, cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	rev := transport.NewMemNetwork(2, transport.Faults{})
	b, err := OpenReversePrimary(cfg, quiet, linkOptions(rev))
	if err != nil {
		t.Fatal(err)
	}
	stopB = runLinked(t, b)
	write(b, "vol3", 3, 2*mib)
	_, r := beginRejoin(t, cfg, b)
	aSec, err := OpenRejoined(cfg, quiet, r, SecondaryOptions{Listener: rev})
	if err != nil {
		t.Fatal(err)
	}
	stopA = runFor(t, aSec.Run)
	slow := int64(1024)
	b.SetRates(&slow, nil)
	if _, err := b.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}); err != nil {
		t.Fatal(err)
	}
	write(b, "vol2", 7, 3*mib)
	quiesceMover(t, b)
	waitFor(t, time.Minute, "A to journal B's write", func() bool {
		return aSec.Replica().Stats().JournaledGroup >= b.Mover().Stats().Acked.Group
	})
	rev.SetDown(true)
	stopB()
	stopA()

	// Failover back: A is the primary again, serving its own image (the
	// copy never ended), and writes.
	pr, fresh, _, err := PromoteBack(ctx, cfg, quiet)
	if err != nil || !fresh {
		t.Fatalf("PromoteBack: fresh %v, %v", fresh, err)
	}
	t.Logf("failed over back: group %d, %d groups held unapplied", pr.Group, pr.HeldGroups)
	if _, again, _, err := PromoteBack(ctx, cfg, quiet); err != nil || again {
		t.Errorf("a second PromoteBack: fresh %v, %v; want the first promotion kept", again, err)
	}
	fwd2 := transport.NewMemNetwork(3, transport.Faults{})
	a2, err := OpenPrimary(cfg, quiet, linkOptions(fwd2))
	if err != nil {
		t.Fatalf("the primary after the failover back: %v", err)
	}
	stopA = runLinked(t, a2)
	if st := a2.Status(); st.Role != "primary" || st.PrimarySite != "primary" || st.PromotedAt != control.FormatTime(pr.At) {
		t.Errorf("A after the failover back: role %q, primary_site %q, promoted_at %q", st.Role, st.PrimarySite, st.PromotedAt)
	}
	if got := byteAt(a2.ReadAt, "vol1", 5*mib); got != 2 {
		t.Errorf("A's own write before the first failover, at the failover back: %d, want 2 (its own image: the copy never ended)", got)
	}
	write(a2, "vol4", 5, 1*mib)

	// B rejoins A: what B wrote that A never had goes, only the regions
	// either site changed are copied, and the sites end identical.
	ch2, err := a2.changedRegions()()
	if err != nil {
		t.Fatal(err)
	}
	plan2, err := PlanRejoinBack(cfg, ch2)
	if err != nil {
		t.Fatalf("rejoin at B after the failover back: %v", err)
	}
	var copyBytes int64
	for _, v := range plan2 {
		t.Logf("rejoin at B: %s copies %d bytes (%d here, %d there) %s", v.Name, v.Copy, v.Here, v.There, v.Whole)
		copyBytes += v.Copy
		if v.Whole != "" {
			t.Errorf("rejoin at B copies the whole of %s: %s", v.Name, v.Whole)
		}
	}
	if copyBytes == 0 || copyBytes > 8*mib {
		t.Errorf("rejoin at B copies %d bytes, want some, and only the regions written", copyBytes)
	}
	r2, err := BeginRejoinBack(cfg, ch2, plan2)
	if err != nil {
		t.Fatal(err)
	}
	bSec2, err := OpenRejoinedBack(cfg, quiet, r2, SecondaryOptions{Listener: fwd2})
	if err != nil {
		t.Fatal(err)
	}
	stopB = runFor(t, bSec2.Run)
	if _, err := a2.rejoin()(control.RejoinRequest{Generation: r2.Generation, Volumes: r2.Discarded}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "every pair of A duplex again", func() bool { return allDuplex(a2) })
	write(a2, "vol2", 6, 6*mib)
	quiesceMover(t, a2)
	sameImages(t, cfg, "after the failover back and B's rejoin", a2, bSec2)
	for _, c := range []struct {
		vol  string
		off  int64
		want byte
	}{{"vol1", 5 * mib, 2}, {"vol2", 3 * mib, 0}, {"vol3", 2 * mib, 0}, {"vol4", mib, 5}} {
		if got := byteAt(bSec2.ReadAt, c.vol, c.off); got != c.want {
			t.Errorf("B after its rejoin: %s at %d holds %d, want %d", c.vol, c.off, got, c.want)
		}
	}

	// The second round trip, in the same directories: A is lost, B
	// fails over again, A rejoins B again.
	write(a2, "vol1", 8, mib)
	quiesceMover(t, a2)
	fwd2.SetDown(true)
	stopA()
	stopB()
	if _, fresh, _, err := Promote(ctx, cfg, quiet, nil); err != nil || !fresh {
		t.Fatalf("the second failover: fresh %v, %v", fresh, err)
	}
	rev3 := transport.NewMemNetwork(4, transport.Faults{})
	b3, err := OpenReversePrimary(cfg, quiet, linkOptions(rev3))
	if err != nil {
		t.Fatalf("B after the second failover: %v", err)
	}
	runLinked(t, b3)
	write(b3, "vol2", 9, 4*mib)
	// The second rejoin at A, as B's secondary again.
	_, r3, aSec3 := rejoinAt(t, cfg, quiet, b3, rev3, SecondaryOptions{})
	if _, err := b3.rejoin()(control.RejoinRequest{Generation: r3.Generation, Volumes: r3.Discarded}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "every pair of B duplex again", func() bool { return allDuplex(b3) })
	write(b3, "vol3", 10, 6*mib)
	quiesceMover(t, b3)
	sameImages(t, cfg, "after the second failover and A's rejoin", b3, aSec3)
	if got := byteAt(aSec3.ReadAt, "vol1", mib); got != 8 {
		t.Errorf("A's last write before the second failover: %d at both, want 8", got)
	}
}
