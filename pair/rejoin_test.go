package pair

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/bitmap"
)

// TestWriteSuspendedThenAddChangedAndResume: a pair state written suspended
// with a promoted site's changed regions opens suspended with those regions;
// a write keeps marking, the regions a rejoin adds are saved with them, and
// a resume copies exactly their union.
func TestWriteSuspendedThenAddChangedAndResume(t *testing.T) {
	const size = 64 * twinRegion
	r := &rig{t: t, dir: t.TempDir()}
	r.ss = newMemSubsystem("ss", 1<<30)
	r.mv = &memMover{subs: []*memSubsystem{r.ss}, connected: true}
	r.vols = []Volume{{Name: "a", Subsystem: r.ss, Size: size}, {Name: "b", Subsystem: r.ss, Size: size}}
	r.opts = Options{Dir: r.dir, SuspendAfter: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	changed := bitmap.New(size, twinRegion)
	changed.Set(3*twinRegion, twinRegion)
	const since = 1000
	if err := WriteSuspended(nil, r.dir, since, []SuspendedVolume{{Name: "a", Subsystem: "ss", Size: size, Changed: changed}, {Name: "b", Subsystem: "ss", Size: size}}); err != nil {
		t.Fatal(err)
	}
	r.openLog()
	r.open()
	for _, name := range []string{"a", "b"} {
		if p := r.pair(name); p.State != Suspended || p.Since != since || p.FirstCopy {
			t.Fatalf("%s opened as %+v, want suspended since %d, not in a first copy", name, p, since)
		}
	}
	if got := r.pendingRegions("a"); !marked(got, 3*twinRegion) || got.Count() != 1 {
		t.Fatalf("a's changed regions: %v, want region 3 only", got)
	}
	r.write("a", 5*twinRegion, 10)
	extra := bitmap.New(size, twinRegion)
	extra.Set(7*twinRegion, 2*twinRegion)
	if added, err := r.mg.AddChanged("a", extra); err != nil || !added {
		t.Fatalf("AddChanged: %v, %v", added, err)
	}
	// Saved before AddChanged returns.
	b, err := os.ReadFile(filepath.Join(r.dir, "a.bitmap"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := bitmap.Decode(b, size)
	if err != nil {
		t.Fatal(err)
	}
	for _, reg := range []int64{3, 5, 7, 8} {
		if !marked(got, reg*twinRegion) {
			t.Errorf("region %d of a not among its changed regions after a crash", reg)
		}
	}
	if got.Count() != 4 {
		t.Errorf("a has %d changed regions, want 4", got.Count())
	}
	if ch, err := r.mg.Changed("a"); err != nil || ch.Count() != 4 {
		t.Errorf("Changed(a): %v, %v, want 4 regions", ch, err)
	}
	// The rejoin names b too, with no regions: owed nothing more.
	if _, err := r.mg.AddChanged("b", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.mg.ResumeAll(); err != nil {
		t.Fatal(err)
	}
	// Not suspended any more: nothing is added.
	if added, err := r.mg.AddChanged("a", extra); err != nil || added {
		t.Errorf("AddChanged of a resumed pair: %v, %v, want not added", added, err)
	}
	r.settle()
	if p := r.pair("a"); p.State != Duplex || p.Resynced != 4*twinRegion {
		t.Errorf("a after the resync: %s, resynced %d bytes, want duplex with %d", p.State, p.Resynced, 4*twinRegion)
	}
	if p := r.pair("b"); p.State != Duplex || p.Resynced != 0 {
		t.Errorf("b after the resync: %s, resynced %d bytes, want duplex with none", p.State, p.Resynced)
	}
}

// TestAPairMadeForARejoinResumesOnlyOnceTheRejoinsRegionsAreAdded: a pair
// state written suspended for the other site's rejoin refuses an
// operator's resume, one pair or all, after a restart too, with a message
// that says how it resumes and what to do if the other site is lost; once
// the rejoin's regions are added it resumes and copies them, and the same
// regions asked again (a repeated request) change nothing.
func TestAPairMadeForARejoinResumesOnlyOnceTheRejoinsRegionsAreAdded(t *testing.T) {
	const size = 64 * twinRegion
	r := &rig{t: t, dir: t.TempDir()}
	r.ss = newMemSubsystem("ss", 1<<30)
	r.mv = &memMover{subs: []*memSubsystem{r.ss}, connected: true}
	r.vols = []Volume{{Name: "a", Subsystem: r.ss, Size: size}}
	r.opts = Options{Dir: r.dir, SuspendAfter: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	if err := WriteSuspended(nil, r.dir, 1000, []SuspendedVolume{{Name: "a", Subsystem: "ss", Size: size}}); err != nil {
		t.Fatal(err)
	}
	r.openLog()
	r.open()
	refused := func(when string) {
		t.Helper()
		err := r.mg.Resume("a")
		if !errors.Is(err, ErrRejoinOwed) {
			t.Fatalf("resume of a %s: %v, want refused for the rejoin", when, err)
		}
		for _, says := range []string{"`duplex rejoin --yes` resumes it", "lost for good", "`duplex pair delete a`", "`duplex pair add a`"} {
			if !strings.Contains(err.Error(), says) {
				t.Errorf("the refusal %q does not say %q", err, says)
			}
		}
		if _, err := r.mg.ResumeAll(); !errors.Is(err, ErrRejoinOwed) {
			t.Fatalf("resume --all %s: %v, want refused for the rejoin", when, err)
		}
		if p := r.pair("a"); p.State != Suspended {
			t.Fatalf("a %s: %s, want still suspended", when, p.State)
		}
	}
	refused("before the rejoin")
	r.crash()
	refused("after a restart before the rejoin")

	extra := bitmap.New(size, twinRegion)
	extra.Set(7*twinRegion, 2*twinRegion)
	if added, err := r.mg.AddChanged("a", extra); err != nil || !added {
		t.Fatalf("AddChanged: %v, %v", added, err)
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatalf("resume once the rejoin's regions are added: %v", err)
	}
	if added, err := r.mg.AddChanged("a", extra); err != nil || added {
		t.Errorf("the rejoin's regions added again: %v, %v, want not added", added, err)
	}
	r.settle()
	if p := r.pair("a"); p.State != Duplex || p.Resynced != 2*twinRegion {
		t.Errorf("a after the resync: %s, resynced %d bytes, want duplex with %d", p.State, p.Resynced, 2*twinRegion)
	}
	// Owed nothing any more: a later suspension resumes as any does.
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.crash()
	if err := r.mg.Resume("a"); err != nil {
		t.Errorf("resume of a later suspension: %v", err)
	}
}

// TestAPairStateFromBeforeRejoinOwedAwaitsTheRequestItNeverGot: a promoted
// site's pair state saved by a version that kept no rejoin_owed records
// none, though the old primary's request may never have come. Opened at
// the promoted site (RejoinSince, the time WriteSuspended made the pairs
// suspended as of), a pair still as WriteSuspended left it is owed the
// request, which resumes every pair: its resume is refused until then, a
// restart too. A pair the request did resume (duplex, or suspended since)
// resumes as before, and so does one whose flag this version cleared.
func TestAPairStateFromBeforeRejoinOwedAwaitsTheRequestItNeverGot(t *testing.T) {
	const size = 64 * twinRegion
	const since = 1000
	r := &rig{t: t, dir: t.TempDir()}
	r.ss = newMemSubsystem("ss", 1<<30)
	r.mv = &memMover{subs: []*memSubsystem{r.ss}, connected: true}
	r.vols = []Volume{{Name: "a", Subsystem: r.ss, Size: size}, {Name: "b", Subsystem: r.ss, Size: size}, {Name: "c", Subsystem: r.ss, Size: size}}
	r.opts = Options{Dir: r.dir, SuspendAfter: time.Hour, Logger: slog.New(slog.DiscardHandler), RejoinSince: since}
	if err := WriteSuspended(nil, r.dir, since, []SuspendedVolume{{Name: "a", Subsystem: "ss", Size: size},
		{Name: "b", Subsystem: "ss", Size: size}, {Name: "c", Subsystem: "ss", Size: size}}); err != nil {
		t.Fatal(err)
	}
	// As the older version saved it: no rejoin_owed anywhere; b resumed by
	// a request and duplex, c resumed by it and suspended again since.
	path := filepath.Join(r.dir, "pairs.json")
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
	for k := range st {
		if k != "clean" && k != "pairs" {
			delete(st, k)
		}
	}
	for _, p := range st["pairs"].([]any) {
		p := p.(map[string]any)
		delete(p, "rejoin_owed")
		switch p["volume"] {
		case "b":
			p["state"], p["copy_end"], p["consistent"], p["resynced"] = "duplex", 2000, 3000, 2*twinRegion
			delete(p, "since")
		case "c":
			p["since"], p["consistent"], p["resynced"], p["copy_end"] = 4000, 4000, twinRegion, 2000
		}
	}
	if b, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r.openLog()
	r.open()
	refused := func(when string) {
		t.Helper()
		if err := r.mg.Resume("a"); !errors.Is(err, ErrRejoinOwed) {
			t.Fatalf("resume of a, untouched since the pair state was made for the rejoin, %s: %v, want refused for the rejoin", when, err)
		}
		if p := r.pair("a"); p.State != Suspended || !p.RejoinOwed {
			t.Fatalf("a %s: %s, rejoin owed %v, want suspended, owed", when, p.State, p.RejoinOwed)
		}
	}
	refused("at the first open by this version")
	if err := r.mg.Resume("c"); err != nil {
		t.Errorf("resume of c, resumed by the request and suspended since: %v", err)
	}
	r.crash()
	refused("after a restart")

	if _, err := r.mg.AddChanged("a", nil); err != nil {
		t.Fatal(err)
	}
	// Cleared by this version: a restart does not take the pair for one
	// an older version saved.
	r.crash()
	if err := r.mg.Resume("a"); err != nil {
		t.Errorf("resume of a once the request came, after a restart: %v", err)
	}
	r.settle()
	for _, name := range []string{"a", "b", "c"} {
		if p := r.pair(name); p.State != Duplex {
			t.Errorf("%s: %s, want duplex", name, p.State)
		}
	}
}

// TestARejoinsRegionsOfAPairWithoutItsChangeBitmapAreCopiedWhole: a
// suspended pair whose subsystem tracks its writes in no bitmap (none
// does at any point the manager lets AddChanged see: every suspension
// and every open installs one, and only a resume, under the same lock
// that makes the pair pending, takes it) has no changed regions to add
// the rejoin's to. AddChanged adds nothing and the pair owes the rejoin
// nothing more: its resume copies the whole volume, the rejoin's regions
// among it.
func TestARejoinsRegionsOfAPairWithoutItsChangeBitmapAreCopiedWhole(t *testing.T) {
	const size = 64 * twinRegion
	r := &rig{t: t, dir: t.TempDir()}
	r.ss = newMemSubsystem("ss", 1<<30)
	r.mv = &memMover{subs: []*memSubsystem{r.ss}, connected: true}
	r.vols = []Volume{{Name: "a", Subsystem: r.ss, Size: size}}
	r.opts = Options{Dir: r.dir, SuspendAfter: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	if err := WriteSuspended(nil, r.dir, 1000, []SuspendedVolume{{Name: "a", Subsystem: "ss", Size: size}}); err != nil {
		t.Fatal(err)
	}
	r.openLog()
	r.open()
	r.ss.mu.Lock()
	delete(r.ss.tracking, "a")
	r.ss.mu.Unlock()
	extra := bitmap.New(size, twinRegion)
	extra.Set(7*twinRegion, 2*twinRegion)
	if added, err := r.mg.AddChanged("a", extra); err != nil || added {
		t.Fatalf("AddChanged of a pair without its bitmap: %v, %v, want nothing added", added, err)
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatalf("resume once the rejoin came: %v", err)
	}
	r.settle()
	if p := r.pair("a"); p.State != Duplex || p.Resynced != size {
		t.Errorf("a after the resync: %s, resynced %d bytes, want duplex with the whole volume, %d", p.State, p.Resynced, int64(size))
	}
}
