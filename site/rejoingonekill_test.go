package site

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/pair"
	"duplex/transport"
)

// goneAtOldPrimary runs the sites of a rejoinConfig duplex, writes vol1 at
// 3 MiB, deletes vol1's image at the old primary, promotes the secondary
// and writes vol3 there: the start of a rejoin whose plan copies vol1
// whole into an image made anew.
func goneAtOldPrimary(t *testing.T) (cfg *config.Config, b *Primary, rev *transport.MemNetwork) {
	t.Helper()
	cfg = duplexWroteVol1(t)
	if err := os.Remove(cfg.Primary.Subsystems[0].Volumes[0].Path); err != nil {
		t.Fatal(err)
	}
	b, rev = promotedWroteVol3(t, cfg)
	return cfg, b, rev
}

// duplexWroteVol1 links two sites until every pair is duplex, writes 1 at
// vol1's 3 MiB, ships it, and stops both: the old primary of a rejoin.
func duplexWroteVol1(t *testing.T) *config.Config {
	t.Helper()
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, _, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	if err := prim.Write(context.Background(), "vol1", bytes.Repeat([]byte{1}, 4096), 3<<20); err != nil {
		t.Fatal(err)
	}
	quiesceMover(t, prim)
	stopPrim()
	stopSec()
	return cfg
}

// promotedWroteVol3 promotes the secondary's site of cfg, runs it as the
// reverse direction's primary and writes 3 at vol3's 2 MiB there.
func promotedWroteVol3(t *testing.T, cfg *config.Config) (*Primary, *transport.MemNetwork) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	if _, _, _, err := Promote(ctx, cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	rev := transport.NewMemNetwork(2, transport.Faults{})
	b, _ := openReversed(t, cfg, quiet, rev)
	if err := b.Write(ctx, "vol3", bytes.Repeat([]byte{3}, 4096), 2<<20); err != nil {
		t.Fatal(err)
	}
	return b, rev
}

// endsIdentical checks a rejoin taken up again: every pair of b duplex,
// the sites identical, vol1's write from before the promotion at a.
func endsIdentical(t *testing.T, cfg *config.Config, b *Primary, a *Secondary) {
	t.Helper()
	waitFor(t, time.Minute, "every pair of the reverse direction duplex", func() bool { return allPairsDuplex(b.Status()) })
	quiesceMover(t, b)
	sameImages(t, cfg, "after the rejoin taken up again", b, a)
	got := make([]byte, 1)
	if err := a.ReadAt("vol1", got, 3<<20); err != nil || got[0] != 1 {
		t.Errorf("vol1 at the old primary after the rejoin: %d, %v; want the write the promoted site holds", got[0], err)
	}
}

// keptOpen is an in-memory link whose listener a stopped secondary does
// not close: the secondary opened again after it listens on it.
type keptOpen struct{ *transport.MemNetwork }

func (keptOpen) Close() error { return nil }

// TestARejoinOfAGoneImageStoppedAtEachStepIsTakenUp: the old primary,
// its image of vol1 gone, rejoins and is stopped (as a kill -9 leaves its
// records) at each step: after the record, after its images were made
// anew, after the promoted site took the request but before that was
// recorded, and once it was (the copy cut by the link). Taken up from the record as
// duplex rejoin --yes does, the rejoin copies vol1 whole every time: the
// sites end identical, vol1's write back at the old primary. The copy
// whole is remembered by the record (every region discarded), never
// planned again over the image made anew as zeros.
func TestARejoinOfAGoneImageStoppedAtEachStepIsTakenUp(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, step := range []string{"after the record", "after the images made anew", "after the request answered, not recorded", "during the copy"} {
		t.Run(step, func(t *testing.T) {
			cfg, b, rev := goneAtOldPrimary(t)
			_, r := beginRejoin(t, cfg, b)
			if step != "after the record" {
				a, err := OpenRejoined(cfg, quiet, r, SecondaryOptions{Listener: keptOpen{rev}})
				if err != nil {
					t.Fatal(err)
				}
				stopA := runFor(t, a.Run)
				switch step {
				case "after the request answered, not recorded", "during the copy":
					// The link cut first, the copy stops part way.
					rev.SetDown(true)
					if _, err := b.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}); err != nil {
						t.Fatal(err)
					}
					if step == "during the copy" {
						if r, err = r.MarkDelivered(cfg); err != nil {
							t.Fatal(err)
						}
					}
				}
				stopA()
				rev.Cut()
				rev.SetDown(false)
			}
			// Taken up as duplex rejoin --yes does: from the record.
			got, err := ReadRejoin(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Gone) != 1 || got.Gone[0] != "vol1" {
				t.Errorf("the rejoin record's gone images: %v, want vol1", got.Gone)
			}
			a, err := OpenRejoined(cfg, quiet, got, SecondaryOptions{Listener: rev})
			if err != nil {
				t.Fatalf("the rejoin taken up: %v", err)
			}
			runFor(t, a.Run)
			if !got.Delivered {
				if _, err := b.rejoin()(control.RejoinRequest{Generation: got.Generation, Volumes: got.Discarded}); err != nil {
					t.Fatal(err)
				}
			}
			endsIdentical(t, cfg, b, a)
		})
	}
}

// TestARejoinOfAGoneImageWithAPairResumedBeforeItsRequest: at the
// promoted site, a pair the operator resumes before the old primary's
// request arrives (duplex pair resume while the old primary's rejoin was
// on its way, killed before its request) is refused, and stays suspended:
// the request's regions, the whole volume whose image at the old primary
// was made anew, are copied all the same. Resumed, it would be duplex over
// zeros. The request asked again adds nothing and ends the same.
func TestARejoinOfAGoneImageWithAPairResumedBeforeItsRequest(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, b, rev := goneAtOldPrimary(t)
	_, r := beginRejoin(t, cfg, b)
	a, err := OpenRejoined(cfg, quiet, r, SecondaryOptions{Listener: rev})
	if err != nil {
		t.Fatal(err)
	}
	runFor(t, a.Run)
	if err := b.Pairs().Resume("vol1"); !errors.Is(err, pair.ErrRejoinOwed) {
		t.Fatalf("the operator's resume of vol1 at the promoted site: %v, want refused until the rejoin", err)
	}
	awaitsRejoin(t, b, len(cfg.VolumeNames()))
	for range 2 {
		if _, err := b.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}); err != nil {
			t.Fatal(err)
		}
	}
	awaitsRejoin(t, b, 0)
	endsIdentical(t, cfg, b, a)
}

// TestARejoinOfAGoneImageLostAgainIsMadeAnewUntilItsCopyBegins: the old
// primary's image of vol1 gone, its rejoin is stopped (as a kill -9
// leaves its records) at each step, and the image made anew is lost
// again before the rejoin is taken up from the record. Until the
// promoted site took the request, nothing was copied to the image, and
// the stream since the rejoin began names vol1 in no group: the image is
// made anew again and copied whole, whether the promoted site was down
// all along or linked and not asked yet. Once the copy began (the
// request answered, not recorded), the groups journaled name the image
// as the promoted site's copy: it is refused, naming the image, as any
// copy's gone image: made anew, its zeros would be reported as the copy
// until the request asked again copied it.
func TestARejoinOfAGoneImageLostAgainIsMadeAnewUntilItsCopyBegins(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	const (
		record   = "after the record"
		down     = "after the images made anew, the promoted site down"
		notAsked = "after the images made anew, the promoted site linked, not asked"
		answered = "after the request answered, not recorded"
	)
	for _, step := range []string{record, down, notAsked, answered} {
		t.Run(step, func(t *testing.T) {
			cfg, b, rev := goneAtOldPrimary(t)
			_, r := beginRejoin(t, cfg, b)
			path := cfg.Primary.Subsystems[0].Volumes[0].Path
			if step != record {
				rev.SetDown(step == down)
				a, err := OpenRejoined(cfg, quiet, r, SecondaryOptions{Listener: keptOpen{rev}})
				if err != nil {
					t.Fatal(err)
				}
				stopA := runFor(t, a.Run)
				switch step {
				case down:
					time.Sleep(300 * time.Millisecond)
				case notAsked:
					waitFor(t, time.Minute, "the promoted site linked", func() bool { return b.Status().Link == "connected" })
					if err := b.Write(context.Background(), "vol3", bytes.Repeat([]byte{5}, 4096), 1<<20); err != nil {
						t.Fatal(err)
					}
					quiesceMover(t, b)
					// The quiesce ends at the group's acknowledgement, given
					// once it is journaled; its apply follows on its own, late
					// on a loaded machine.
					waitFor(t, 20*time.Second, "a group from the promoted site, linked, applied: without it the step tests nothing the stream names", func() bool { return a.Replica().Stats().Group > 0 })
				case answered:
					if _, err := b.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}); err != nil {
						t.Fatal(err)
					}
					waitFor(t, time.Minute, "every pair of the reverse direction duplex", func() bool { return allPairsDuplex(b.Status()) })
					quiesceMover(t, b)
					sameImages(t, cfg, "after the copy", b, a)
				}
				stopA()
				rev.Cut()
				rev.SetDown(false)
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadRejoin(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got.Delivered {
				t.Fatal("the record says the request was delivered: the step is not the one under test")
			}
			if got.GoneMade != (step != record) {
				t.Fatalf("the record says gone_made %v at the step %q", got.GoneMade, step)
			}
			a, err := OpenRejoined(cfg, quiet, got, SecondaryOptions{Listener: rev})
			if step != answered {
				if err != nil {
					t.Fatalf("the rejoin taken up, nothing copied to vol1 yet: %v", err)
				}
				runFor(t, a.Run)
				if _, err := b.rejoin()(control.RejoinRequest{Generation: got.Generation, Volumes: got.Discarded}); err != nil {
					t.Fatal(err)
				}
				endsIdentical(t, cfg, b, a)
				return
			}
			if err == nil {
				v := a.Replica().Volume("vol1")
				a.Close()
				t.Fatalf("the rejoin taken up with vol1's image made anew over its copy: opened, vol1 (zeros) reported %+v; want refused", v)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("the refusal does not name the image %s: %v", path, err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// awaitsRejoin checks that the status and metrics of p, a promoted site,
// say that n of its pairs await the old primary's rejoin request, and for
// each the way forward: what resumes it, and what to do if the old
// primary is lost for good.
func awaitsRejoin(t *testing.T, p *Primary, n int) {
	t.Helper()
	owed := 0
	for _, v := range p.Status().Volumes {
		if !v.RejoinOwed {
			if strings.Contains(v.Note, "rejoin") {
				t.Errorf("%s, not awaiting the rejoin, has the note %q", v.Name, v.Note)
			}
			continue
		}
		owed++
		for _, says := range []string{"`duplex rejoin --yes`", "lost for good", "`duplex pair delete " + v.Name + "`", "`duplex pair add " + v.Name + "`"} {
			if !strings.Contains(v.Note, says) {
				t.Errorf("the status note of %s, awaiting the rejoin, %q does not say %q", v.Name, v.Note, says)
			}
		}
	}
	if owed != n {
		t.Errorf("status shows %d pairs awaiting the rejoin, want %d", owed, n)
	}
	if got := sampleMap(p.Samples())["pairs_awaiting_rejoin"].Value; got != float64(n) {
		t.Errorf("duplex_pairs_awaiting_rejoin %v, want %d", got, n)
	}
}

// TestAPromotedSiteOfAnEarlierVersionAwaitsTheRejoinRequest: the reverse
// direction's pair state, made and saved by a version that kept no record
// of the old primary's rejoin request (no rejoin_owed), is opened by this
// one before the request came: the pairs, still as they were made for
// the rejoin, refuse the operator's resume and say they await it, and
// the request, once it comes, resumes them with the old primary's
// regions (vol1's image there made anew: copied whole).
func TestAPromotedSiteOfAnEarlierVersionAwaitsTheRejoinRequest(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := duplexWroteVol1(t)
	if err := os.Remove(cfg.Primary.Subsystems[0].Volumes[0].Path); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	rev := transport.NewMemNetwork(2, transport.Faults{})
	_, stopB := openReversed(t, cfg, quiet, rev)
	stopB()
	// As the earlier version saved it.
	path := filepath.Join(ReverseDir(cfg), "pairs.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Its times as written: as float64, they would be rounded.
	var st map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&st); err != nil {
		t.Fatal(err)
	}
	delete(st, "rejoin_owed_kept")
	for _, p := range st["pairs"].([]any) {
		delete(p.(map[string]any), "rejoin_owed")
	}
	if b, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}

	bb, stopBB := openReversed(t, cfg, quiet, rev)
	if err := bb.Pairs().Resume("vol1"); !errors.Is(err, pair.ErrRejoinOwed) {
		t.Fatalf("the operator's resume of vol1 at the promoted site, before the request: %v, want refused until the rejoin", err)
	}
	awaitsRejoin(t, bb, len(cfg.VolumeNames()))
	// Taken as awaiting it from a state that cannot tell: the note says
	// so, and the way out if the request came already, also once the
	// state is saved again by this version.
	for range 2 {
		for _, v := range bb.Status().Volumes {
			for _, says := range []string{"earlier version", cfg.Session + ".primary/rejoin.json", `"delivered": true`, "asks again"} {
				if !strings.Contains(v.Note, says) {
					t.Errorf("the status note of %s, taken as awaiting the rejoin from an earlier version's state, %q does not say %q", v.Name, v.Note, says)
				}
			}
		}
		stopBB()
		bb, stopBB = openReversed(t, cfg, quiet, rev)
	}
	_, r := beginRejoin(t, cfg, bb)
	a := rejoined(t, cfg, quiet, r, rev, SecondaryOptions{})
	if _, err := bb.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}); err != nil {
		t.Fatal(err)
	}
	awaitsRejoin(t, bb, 0)
	endsIdentical(t, cfg, bb, a)
}
