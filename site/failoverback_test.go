package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"duplex/config"
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
	cfg := linkConfig(t)
	for i := range cfg.Primary.Subsystems {
		for j := range cfg.Primary.Subsystems[i].Volumes {
			cfg.Primary.Subsystems[i].Volumes[j].Size = config.Size(8 * mib)
		}
	}
	cfg.Primary.Listen, cfg.Primary.Journal = "127.0.0.1:0", filepath.Join(cfg.Dir, "primary", "journal")
	cfg.Primary.NBD, cfg.Secondary.NBD = "127.0.0.1:0", "127.0.0.1:0"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	fill := func(b byte) []byte { return bytes.Repeat([]byte{b}, 4096) }
	popts := func(n transport.Dialer) PrimaryOptions {
		return PrimaryOptions{Dialer: n, Retransmit: 40 * time.Millisecond, HandshakeTimeout: 500 * time.Millisecond}
	}
	runPrimary := func(p *Primary) func() {
		return runFor(t, func(ctx context.Context) error { return p.Run(ctx, 200*time.Millisecond) })
	}
	allDuplex := func(p *Primary) bool {
		st := p.Status()
		for _, v := range st.Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		return len(st.Volumes) == 4 && st.Link == "connected"
	}
	write := func(p *Primary, vol string, b byte, off int64) {
		t.Helper()
		if err := p.Write(ctx, vol, fill(b), off); err != nil {
			t.Fatalf("write %s at %d: %v", vol, off, err)
		}
	}
	quiesce := func(p *Primary) {
		t.Helper()
		qctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := p.Mover().Quiesce(qctx); err != nil {
			t.Fatal(err)
		}
	}
	identical := func(when string, p *Primary, s *Secondary) {
		t.Helper()
		waitFor(t, time.Minute, "the secondary to apply the primary's last group "+when, func() bool {
			return s.Replica().Stats().Group >= p.Mover().Stats().Acked.Group
		})
		got, exp := make([]byte, mib), make([]byte, mib)
		for _, name := range cfg.VolumeNames() {
			for off := int64(0); off < 8*mib; off += mib {
				if err := p.ReadAt(name, exp, off); err != nil {
					t.Fatal(err)
				}
				if err := s.ReadAt(name, got, off); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, exp) {
					t.Errorf("%s: %s at %d differs between the sites", when, name, off)
				}
			}
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
	a, err := OpenPrimary(cfg, quiet, popts(fwd))
	if err != nil {
		t.Fatal(err)
	}
	stopA := runPrimary(a)
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allDuplex(a) })
	write(a, "vol1", 1, 0)
	quiesce(a)
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
	b, err := OpenReversePrimary(cfg, quiet, popts(rev))
	if err != nil {
		t.Fatal(err)
	}
	stopB = runPrimary(b)
	write(b, "vol3", 3, 2*mib)
	ch, err := b.changedRegions()()
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanRejoin(cfg, ch)
	if err != nil {
		t.Fatal(err)
	}
	r, err := BeginRejoin(cfg, ch, plan)
	if err != nil {
		t.Fatal(err)
	}
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
	quiesce(b)
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
	a2, err := OpenPrimary(cfg, quiet, popts(fwd2))
	if err != nil {
		t.Fatalf("the primary after the failover back: %v", err)
	}
	stopA = runPrimary(a2)
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
	quiesce(a2)
	identical("after the failover back and B's rejoin", a2, bSec2)
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
	quiesce(a2)
	fwd2.SetDown(true)
	stopA()
	stopB()
	if _, fresh, _, err := Promote(ctx, cfg, quiet, nil); err != nil || !fresh {
		t.Fatalf("the second failover: fresh %v, %v", fresh, err)
	}
	rev3 := transport.NewMemNetwork(4, transport.Faults{})
	b3, err := OpenReversePrimary(cfg, quiet, popts(rev3))
	if err != nil {
		t.Fatalf("B after the second failover: %v", err)
	}
	runPrimary(b3)
	write(b3, "vol2", 9, 4*mib)
	ch3, err := b3.changedRegions()()
	if err != nil {
		t.Fatal(err)
	}
	plan3, err := PlanRejoin(cfg, ch3)
	if err != nil {
		t.Fatalf("the second rejoin at A: %v", err)
	}
	r3, err := BeginRejoin(cfg, ch3, plan3)
	if err != nil {
		t.Fatalf("the second rejoin at A: %v", err)
	}
	aSec3, err := OpenRejoined(cfg, quiet, r3, SecondaryOptions{Listener: rev3})
	if err != nil {
		t.Fatalf("A as B's secondary again: %v", err)
	}
	runFor(t, aSec3.Run)
	if _, err := b3.rejoin()(control.RejoinRequest{Generation: r3.Generation, Volumes: r3.Discarded}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "every pair of B duplex again", func() bool { return allDuplex(b3) })
	write(b3, "vol3", 10, 6*mib)
	quiesce(b3)
	identical("after the second failover and A's rejoin", b3, aSec3)
	if got := byteAt(aSec3.ReadAt, "vol1", mib); got != 8 {
		t.Errorf("A's last write before the second failover: %d at both, want 8", got)
	}
}
