package site

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"duplex/control"
	"duplex/transport"
)

// TestARejoinCopiesAnImageGoneHere: the old primary's refusal of a volume
// whose image is gone says to make the secondary's site the primary; the
// old primary then rejoins it. The rejoin copies that volume whole (what
// the image held is gone, so no changed regions describe it) into an
// image made anew, and the sites end identical. A rejoin that copied only
// the changed regions would leave zeros where the image held data, the
// volume reported consistent.
func TestARejoinCopiesAnImageGoneHere(t *testing.T) {
	for _, g := range gone[:2] { // deleted, emptied; cut short: TestARejoinOfAnImageCutShortHere
		t.Run(g.name, func(t *testing.T) {
			cfg := duplexWroteVol1(t)
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

			path := cfg.Primary.Subsystems[0].Volumes[0].Path
			if err := g.do(path); err != nil {
				t.Fatal(err)
			}
			if p, err := OpenPrimary(cfg, quiet, PrimaryOptions{Dialer: transport.NewMemNetwork(1, transport.Faults{})}); err == nil {
				stopAtOnce(p)
				t.Fatal("the old primary started over its image gone")
			} else if !errors.Is(err, errImageGone) || !strings.Contains(err.Error(), "duplex promote there") {
				t.Fatalf("the old primary's refusal: %v; want the image gone, and duplex promote at the secondary", err)
			}
			// As the refusal says: the secondary's site becomes the primary.
			b, rev := promotedWroteVol3(t, cfg)

			plan, r := beginRejoin(t, cfg, b)
			for _, v := range plan {
				if v.Name == "vol1" && (v.Copy != rejoinVolumeSize || !strings.Contains(v.Whole, "gone")) {
					t.Errorf("the rejoin's plan for vol1, whose image here is %s: copy %d bytes (%s); want the whole volume, its image gone", g.name, v.Copy, v.Whole)
				}
			}
			a := rejoined(t, cfg, quiet, r, rev, SecondaryOptions{})
			if _, err := b.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, time.Minute, "every pair of the reverse direction duplex", func() bool { return allPairsDuplex(b.Status()) })
			quiesceMover(t, b)
			sameImages(t, cfg, "after the rejoin's copy", b, a)
			got := make([]byte, 1)
			if err := a.ReadAt("vol1", got, 3<<20); err != nil || got[0] != 1 {
				t.Errorf("vol1 at the old primary after the rejoin: %d, %v; want the write the promoted site holds", got[0], err)
			}
		})
	}
}

// TestARejoinOfAnImageCutShortHere: an image cut short at the old primary
// is not made whole by the rejoin, which never writes over what an image
// holds outside its copy: the plan is refused, naming the image, before
// anything changes, and says to put it back or remove it (then the
// volume is copied whole).
func TestARejoinOfAnImageCutShortHere(t *testing.T) {
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, _, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	stopPrim()
	stopSec()
	path := cfg.Primary.Subsystems[0].Volumes[0].Path
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := openReversed(t, cfg, quiet, transport.NewMemNetwork(2, transport.Faults{}))
	ch, err := b.changedRegions()()
	if err != nil {
		t.Fatal(err)
	}
	_, err = PlanRejoin(cfg, ch)
	if err == nil {
		t.Fatal("the rejoin planned over an image cut short")
	}
	wantWords(t, "the refusal", err.Error(), path, "vol1", "Put the image back", "remove it")
	if _, err := ReadRejoin(cfg); !errors.Is(err, ErrNotRejoined) {
		t.Errorf("a rejoin is recorded after its plan was refused: %v", err)
	}
}

// TestARejoinBackCopiesAnImageGoneHere: the same at a promoted site that
// rejoins back the old primary, which failed over back while it was down:
// its image of a volume gone, the volume is copied whole into an image
// made anew, and the sites end identical.
func TestARejoinBackCopiesAnImageGoneHere(t *testing.T) {
	cfg := rejoinConfig(t)
	cfg.Primary.NBD = "127.0.0.1:0"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	_, _, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	stopPrim()
	stopSec()
	// A round trip: B promoted, A rejoins it and is copied.
	if _, _, _, err := Promote(ctx, cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	rev := transport.NewMemNetwork(2, transport.Faults{})
	b, stopB := openReversed(t, cfg, quiet, rev)
	if err := b.Write(ctx, "vol2", bytes.Repeat([]byte{2}, 4096), 1<<20); err != nil {
		t.Fatal(err)
	}
	_, r := beginRejoin(t, cfg, b)
	a, err := OpenRejoined(cfg, quiet, r, SecondaryOptions{Listener: rev})
	if err != nil {
		t.Fatal(err)
	}
	stopA := runFor(t, a.Run)
	if _, err := b.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "every pair of B duplex", func() bool { return allPairsDuplex(b.Status()) })
	quiesceMover(t, b)
	sameImages(t, cfg, "after A's rejoin", b, a)
	rev.SetDown(true)
	stopB()
	stopA()

	// B is lost; A fails over back and serves; B's image of vol2 is gone.
	if _, _, _, err := PromoteBack(ctx, cfg, quiet); err != nil {
		t.Fatal(err)
	}
	fwd := transport.NewMemNetwork(3, transport.Faults{})
	a2, err := OpenPrimary(cfg, quiet, linkOptions(fwd))
	if err != nil {
		t.Fatal(err)
	}
	runLinked(t, a2)
	if err := a2.Write(ctx, "vol4", bytes.Repeat([]byte{4}, 4096), 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cfg.Secondary.Volumes[1].Path); err != nil {
		t.Fatal(err)
	}
	ch, err := a2.changedRegions()()
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanRejoinBack(cfg, ch)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range plan {
		if v.Name == "vol2" && (v.Copy != rejoinVolumeSize || !strings.Contains(v.Whole, "gone")) {
			t.Errorf("the rejoin back's plan for vol2, whose image here is deleted: copy %d bytes (%s); want the whole volume, its image gone", v.Copy, v.Whole)
		}
	}
	r2, err := BeginRejoinBack(cfg, ch, plan)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := OpenRejoinedBack(cfg, quiet, r2, SecondaryOptions{Listener: fwd})
	if err != nil {
		t.Fatalf("B rejoined back as the secondary: %v", err)
	}
	runFor(t, b2.Run)
	if _, err := a2.rejoin()(control.RejoinRequest{Generation: r2.Generation, Volumes: r2.Discarded}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "every pair of A duplex again", func() bool { return allPairsDuplex(a2.Status()) })
	quiesceMover(t, a2)
	sameImages(t, cfg, "after B's rejoin back", a2, b2)
	got := make([]byte, 1)
	if err := b2.ReadAt("vol2", got, 1<<20); err != nil || got[0] != 2 {
		t.Errorf("vol2 at B after its rejoin back: %d, %v; want B's write from before, which A holds", got[0], err)
	}
}
