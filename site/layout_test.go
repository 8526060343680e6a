package site

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDocLayoutIsWhatTheSitesKeep: the files the package doc says each
// site keeps are the files a run of both sites leaves, and a run leaves
// no file the doc does not describe.
func TestDocLayoutIsWhatTheSitesKeep(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	cfg := linkConfig(t)
	s, err := OpenSecondary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopSecondary := context.WithCancel(context.Background())
	sdone := make(chan struct{})
	go func() {
		defer close(sdone)
		s.Run(sctx)
	}()
	cfg.Primary.Secondary = s.ListenAddr()
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stopPrimary := context.WithCancel(context.Background())
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(pctx, 30*time.Second) }()
	waitFor(t, 30*time.Second, "the pairs to be duplex", func() bool {
		for _, v := range p.Status().Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		return true
	})
	// A suspended pair keeps a bitmap.
	if err := p.Pairs().Suspend("vol1"); err != nil {
		t.Fatal(err)
	}
	stopPrimary()
	if err := <-pdone; err != nil {
		t.Fatalf("primary: %v", err)
	}
	stopSecondary()
	<-sdone

	// Each directory, the files the doc names in it (a pattern where the
	// name varies), and each must be there.
	dirs := []struct {
		dir   string
		files []string
	}{
		{PairStateDir(cfg), []string{"LOCK", "pairs.json", "VOLUME.bitmap", "activity.log", "timer.json", "generation.json"}},
		{cfg.Secondary.Journal, []string{"LOCK", "%016x.seg"}},
		{filepath.Dir(StatePath(cfg)), []string{"secondary.lock", "state.json", "identity.json", filepath.Base(cfg.Secondary.Journal)}},
	}
	for _, d := range dirs {
		found := map[string]bool{}
		entries, err := os.ReadDir(d.dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			name := e.Name()
			known := false
			for _, f := range d.files {
				pat := "^" + regexp.QuoteMeta(f) + "$"
				pat = strings.ReplaceAll(pat, "VOLUME", `vol\d+`)
				pat = strings.ReplaceAll(pat, "%016x", "[0-9a-f]{16}")
				if regexp.MustCompile(pat).MatchString(name) {
					known, found[f] = true, true
				}
			}
			// The journal's spare is there only after a release.
			if name == "spare" && d.dir == cfg.Secondary.Journal && strings.Contains(string(doc), "JOURNAL/spare") {
				known = true
			}
			if !known && !strings.HasSuffix(name, ".img") {
				t.Errorf("%s holds %s, which the package doc does not describe", d.dir, name)
			}
		}
		for _, f := range d.files {
			if !found[f] {
				t.Errorf("%s holds no %s", d.dir, f)
			}
			if f != filepath.Base(cfg.Secondary.Journal) && !strings.Contains(string(doc), f) {
				t.Errorf("the package doc does not name %s", f)
			}
		}
	}
}

// TestDocLayoutOfAPromotedSite: the files the package doc says a promoted
// site keeps are those a promotion and a run of it leave.
func TestDocLayoutOfAPromotedSite(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	cfg := linkConfig(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	firstStart(t, cfg)
	if _, fresh, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil || !fresh {
		t.Fatalf("Promote: fresh %v, %v", fresh, err)
	}
	p, err := OpenPromoted(cfg, quiet, PromotedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	files := []string{"promotion.json", "VOLUME.bitmap", "changes.log", "timer.json", "LOCK"}
	entries, err := os.ReadDir(PromotedDir(cfg))
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, e := range entries {
		known := false
		for _, f := range files {
			if regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(f), "VOLUME", `vol\d+`) + "$").MatchString(e.Name()) {
				known, found[f] = true, true
			}
		}
		if !known {
			t.Errorf("%s holds %s, which the package doc does not describe", PromotedDir(cfg), e.Name())
		}
	}
	for _, f := range files {
		if !found[f] {
			t.Errorf("%s holds no %s", PromotedDir(cfg), f)
		}
		if !strings.Contains(string(doc), f) {
			t.Errorf("the package doc does not name %s", f)
		}
	}
	if filepath.Dir(PromotedDir(cfg)) != filepath.Dir(StatePath(cfg)) || !strings.Contains(string(doc), "directory promoted beside state.json") {
		t.Error("the promoted directory is not where the package doc says")
	}
}
