package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/site"
)

// TestPromoteAgainAfterAFailoverBack: the old primary failed over back
// (duplex promote at it, rejoin record gone, its pair state holding the
// promotion) and is killed; duplex promote there again, as for any
// promoted site after a kill -9, must not promote the [secondary]
// section's site here (the other site's volumes and state paths): it
// serves this site as the primary again, or refuses and names duplex
// primary.
func TestPromoteAgainAfterAFailoverBack(t *testing.T) {
	dir := t.TempDir()
	c := startupSession(dir)
	c.Primary.Listen, c.Primary.Journal = "127.0.0.1:0", filepath.Join(dir, "primary", "journal")
	path := writeSessionConfig(t, dir, c)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(site.PairStateDir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := `{"session":"startup","rejoined_at_ns":1,"promoted_at":"then","generation":"00000000000000b1","discarded":{},"delivered":true}`
	if err := os.WriteFile(filepath.Join(site.PairStateDir(cfg), "rejoin.json"), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	serve := func(what string) (string, string) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out, errb := &lockedBuffer{}, &lockedBuffer{}
		done := make(chan int, 1)
		go func() { done <- run(ctx, []string{"promote", "--config", path, "--log-level", "error"}, out, errb) }()
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "serving "); time.Sleep(10 * time.Millisecond) {
			select {
			case <-done:
				return out.String(), errb.String()
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: does not serve within 30s: stdout %q, stderr %q", what, out, errb)
			}
		}
		cancel()
		<-done
		return out.String(), errb.String()
	}
	out, errb := serve("the failover back")
	if !strings.Contains(out, "as the session's primary again;") {
		t.Fatalf("the failover back did not serve as the primary: stdout %q, stderr %q", out, errb)
	}
	if _, err := os.Stat(site.PromotedDir(cfg)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the other site's promotion directory was made here: %v", err)
	}
	// Killed; promote again, as the runbook says after a kill -9.
	out, errb = serve("promote again")
	t.Logf("promote again: stdout %q, stderr %q", out, errb)
	if _, err := os.Stat(site.PromotedDir(cfg)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("duplex promote again at the site that failed over back promoted the [secondary] section's site (%s made): "+
			"stdout %q", site.PromotedDir(cfg), out)
	}
	if strings.Contains(out, "serving ") && !strings.Contains(out, "as the session's primary again;") {
		t.Errorf("duplex promote again serves something other than this site as the primary: %q", out)
	}
}
