package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/consistency"
	"duplex/control"
	"duplex/transport"
)

// holdByResyncOfVol1 suspends vol1, writes two of its regions, resumes it
// with the copy rate at 1 KiB/s, so that its resync stays open, and ships
// a write of 7s to vol2 at 3 MiB: journaled at the secondary, held there by
// vol1's resync.
func holdByResyncOfVol1(t *testing.T, prim *Primary) {
	t.Helper()
	const mib = 1 << 20
	ctx := context.Background()
	fill := func(b byte) []byte { return bytes.Repeat([]byte{b}, 4096) }
	if err := prim.Pairs().Suspend("vol1"); err != nil {
		t.Fatal(err)
	}
	// Two regions: the copy rate's burst takes one at once, the other waits.
	for _, off := range []int64{mib, 5 * mib} {
		if err := prim.Write(ctx, "vol1", fill(1), off); err != nil {
			t.Fatal(err)
		}
	}
	slow := int64(1024)
	prim.SetRates(&slow, nil)
	if err := prim.Pairs().Resume("vol1"); err != nil {
		t.Fatal(err)
	}
	if err := prim.Write(ctx, "vol2", fill(7), 3*mib); err != nil {
		t.Fatal(err)
	}
	quiesceMover(t, prim)
}

// runFor runs f (a site's Run) until the test ends or stop is called.
func runFor(t *testing.T, run func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// linkSites opens a secondary with sopts and its primary on cfg, joined by
// an in-memory link (returned, to cut it), and runs both until the test
// ends or their stop is called.
func linkSites(t *testing.T, cfg *config.Config, log *slog.Logger, sopts SecondaryOptions) (fwd *transport.MemNetwork, sec *Secondary, prim *Primary, stopSec, stopPrim func()) {
	t.Helper()
	fwd = transport.NewMemNetwork(1, transport.Faults{})
	sopts.Listener = fwd
	sec, err := OpenSecondary(cfg, log, sopts)
	if err != nil {
		t.Fatal(err)
	}
	stopSec = runFor(t, sec.Run)
	prim, err = OpenPrimary(cfg, log, PrimaryOptions{Dialer: fwd, Retransmit: 40 * time.Millisecond, HandshakeTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stopPrim = runFor(t, func(ctx context.Context) error { return prim.Run(ctx, 200*time.Millisecond) })
	return fwd, sec, prim, stopSec, stopPrim
}

// TestRejoinReversesTheDirection runs the round trip through the sites: the
// old primary has writes the secondary never had, the secondary is promoted
// and written, the old primary rejoins, and the promoted site copies
// exactly the regions either site changed, after which both sites hold the
// same bytes and replication runs the other way; the old primary's volumes
// stay as they were until the copy ends.
func TestRejoinReversesTheDirection(t *testing.T) {
	const mib = 1 << 20
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fwd, _, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	ctx := context.Background()
	fill := func(b byte) []byte { return bytes.Repeat([]byte{b}, 4096) }
	if err := prim.Write(ctx, "vol1", fill(1), 0); err != nil {
		t.Fatal(err)
	}
	quiesceMover(t, prim)
	// The link goes down: this write never reaches the secondary.
	fwd.SetDown(true)
	if err := prim.Write(ctx, "vol1", fill(2), 5*mib); err != nil {
		t.Fatal(err)
	}
	stopPrim()
	stopSec()

	pr, _, _, err := Promote(context.Background(), cfg, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	rev := transport.NewMemNetwork(2, transport.Faults{})
	b, _ := openReversed(t, cfg, quiet, rev)
	if st := b.Status(); st.Role != "primary" || st.PromotedAt != control.FormatTime(pr.At) || st.Link != "suspended" {
		t.Errorf("the promoted site's status: role %q, promoted_at %q, link %q; want primary since %s, suspended",
			st.Role, st.PromotedAt, st.Link, control.FormatTime(pr.At))
	}
	if err := b.Write(ctx, "vol3", fill(3), 2*mib); err != nil {
		t.Fatal(err)
	}

	plan, r := beginRejoin(t, cfg, b)
	if _, err := OpenPrimary(cfg, quiet, PrimaryOptions{Dialer: fwd}); err == nil {
		t.Error("the old primary opened as a primary after it rejoined")
	}
	// Until the copy ends, the old primary's volumes are as they were.
	before := make([]byte, 4096)
	// At every group it applies, the old primary holds either its own image
	// (its discarded write, not the promoted site's) or the promoted
	// site's (the write there, not its own): never a mix.
	var mixed, jumped atomic.Int32
	onApplied := func(_ *consistency.Group, read func(vol string, p []byte, off int64) error) {
		mine, theirs := make([]byte, 1), make([]byte, 1)
		if read("vol1", mine, 5*mib) != nil || read("vol3", theirs, 2*mib) != nil {
			mixed.Add(1)
			return
		}
		if (mine[0] == 2) == (theirs[0] == 3) {
			mixed.Add(1)
		}
		if theirs[0] == 3 {
			jumped.Add(1)
		}
	}
	a := rejoined(t, cfg, quiet, r, rev, SecondaryOptions{OnApplied: onApplied})
	for _, v := range a.Status().Volumes {
		if v.ConsistencyTime != "" || !strings.Contains(v.Consistency, "own image from before the rejoin") {
			t.Errorf("the old primary's %s before the copy: consistent as of %q, %q; want its own image, as of no time of the promoted site", v.Name, v.ConsistencyTime, v.Consistency)
		}
	}
	if err := a.ReadAt("vol1", before, 5*mib); err != nil || before[0] != 2 {
		t.Errorf("the old primary's own write before the copy: %d, %v; want it there until the copy ends", before[0], err)
	}
	res, err := b.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Resumed) != 4 {
		t.Errorf("resumed %v, want every pair", res.Resumed)
	}
	waitFor(t, time.Minute, "every pair of the reverse direction duplex", func() bool { return allPairsDuplex(b.Status()) })
	if err := b.Write(ctx, "vol2", fill(4), 7*mib); err != nil {
		t.Fatal(err)
	}
	quiesceMover(t, b)
	sameImages(t, cfg, "after the rejoin's copy", b, a)
	// Only the changed regions were copied, as the plan said: vol1's
	// regions the activity log still marked (its granularity is 1 MiB, and
	// a region acknowledged before the crash may keep its mark), vol3's 64
	// KiB region, nothing else.
	planned := map[string]int64{}
	for _, v := range plan {
		planned[v.Name] = v.Copy
	}
	for _, p := range b.Pairs().Pairs() {
		if p.Resynced != planned[p.Volume] {
			t.Errorf("%s: resynced %d bytes, want the %d the plan said", p.Volume, p.Resynced, planned[p.Volume])
		}
	}
	if c := planned["vol1"]; c < mib || c > 2*mib {
		t.Errorf("vol1: the plan copies %d bytes, want its divergent MiB, and at most the one acknowledged before", c)
	}
	if c := planned["vol3"]; c != 64<<10 {
		t.Errorf("vol3: the plan copies %d bytes, want the 64 KiB region the promoted site wrote", c)
	}
	if c := planned["vol2"] + planned["vol4"]; c != 0 {
		t.Errorf("vol2 and vol4: the plan copies %d bytes of volumes neither site changed", c)
	}
	if n := mixed.Load(); n > 0 {
		t.Errorf("%d groups applied at the old primary left a mix of its image and the promoted site's", n)
	}
	if jumped.Load() == 0 {
		t.Error("no group applied at the old primary was seen holding the promoted site's image")
	}
	if err := a.ReadAt("vol1", before, 5*mib); err != nil || before[0] != 0 {
		t.Errorf("the old primary's discarded write: %d, %v; want it gone", before[0], err)
	}
	for _, v := range a.Status().Volumes {
		if v.ConsistencyTime == "" || strings.Contains(v.Consistency, "own image") {
			t.Errorf("the old primary's %s after the copy: consistent as of %q, %q; want the promoted site's time", v.Name, v.ConsistencyTime, v.Consistency)
		}
	}
	if st := a.Status(); st.Role != "secondary" || st.PromotedAt != control.FormatTime(pr.At) {
		t.Errorf("the old primary's status: role %q, promoted_at %q; want secondary, the other site primary since %s", st.Role, st.PromotedAt, control.FormatTime(pr.At))
	}
}

// Groups the promoted site journaled but never applied (a resync held it
// when it was promoted) hold writes the old primary has and the promoted
// site does not, in regions neither site's changes name (the old primary's
// activity log let them go once they were journaled): the reverse
// direction reads their regions from the journal, so that the rejoin
// copies them back, and the sites end identical.
func TestRejoinCopiesTheRegionsOfHeldGroups(t *testing.T) {
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fwd, _, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	holdByResyncOfVol1(t, prim)
	fwd.SetDown(true)
	stopPrim()
	stopSec()

	pr, _, _, err := Promote(context.Background(), cfg, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pr.HeldGroups == 0 {
		t.Fatal("the promotion holds no held groups: the test did not hold the secondary")
	}
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
