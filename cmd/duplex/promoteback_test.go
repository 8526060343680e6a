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
	"duplex/failover"
	"duplex/internal/testenv"
	"duplex/site"
)

// TestPromoteFailsOverBack: duplex promote at the old primary that rejoined
// the promoted site (its rejoin record, no promotion of its own) fails over
// back: it promotes this site and serves it as the session's primary again,
// its pair state made from that promotion and the rejoin record gone.
func TestPromoteFailsOverBack(t *testing.T) {
	path, cfg := rejoinedOldPrimary(t)
	out, errb, code := promoteUntil(t, path, "duplex promote at the rejoined old primary", "as the session's primary again;")
	if code >= 0 {
		t.Fatalf("duplex promote at the rejoined old primary exited %d before serving: stdout %q, stderr %q", code, out, errb)
	}
	if !strings.Contains(out, "is the session's primary again from now on") {
		t.Errorf("promote does not say it failed over back:\n%s", out)
	}
	if _, err := failover.ReadPromotion(nil, site.PairStateDir(cfg)); err != nil {
		t.Errorf("the pair state holds no promotion: %v", err)
	}
	if _, err := site.ReadRejoin(cfg); !errors.Is(err, site.ErrNotRejoined) {
		t.Errorf("the rejoin record stays: %v", err)
	}
	if _, err := os.Stat(site.PromotedDir(cfg)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the other site's promotion directory was made here: %v", err)
	}
}

// rejoinedOldPrimary writes a session whose site here is the old primary
// that rejoined the promoted site: its rejoin record, delivered, and no
// promotion of its own.
func rejoinedOldPrimary(t *testing.T) (path string, cfg *config.Config) {
	t.Helper()
	dir := t.TempDir()
	c := startupSession(dir)
	c.Primary.Listen, c.Primary.Journal = "127.0.0.1:0", filepath.Join(dir, "primary", "journal")
	path = writeSessionConfig(t, dir, c)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// As the rejoin left it: its state seeded, a secondary's.
	rev, err := cfg.Reversed()
	if err != nil {
		t.Fatal(err)
	}
	startedOnce(t, rev)
	if err := os.MkdirAll(site.PairStateDir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := `{"session":"startup","rejoined_at_ns":1,"promoted_at":"then","generation":"00000000000000b1","discarded":{},"delivered":true}`
	if err := os.WriteFile(filepath.Join(site.PairStateDir(cfg), "rejoin.json"), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, cfg
}

// promoteUntil runs duplex promote on the config at path until its stdout
// holds want, then stops it (SIGINT's context), and returns its output and
// its exit code if it exited before, -1 if it was stopped. Its stop waits
// for a secondary that never comes (exit 1, as duplex primary's): what it
// exits with then is not what these tests are about.
func promoteUntil(t *testing.T, path, what, want string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errb := &testenv.LogBuffer{}, &testenv.LogBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"promote", "--config", path, "--log-level", "error"}, out, errb) }()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), want); time.Sleep(10 * time.Millisecond) {
		select {
		case code := <-done:
			return out.String(), errb.String(), code
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("%s: does not serve within 30s: stdout %q, stderr %q", what, out, errb)
		}
	}
	cancel()
	<-done
	return out.String(), errb.String(), -1
}
