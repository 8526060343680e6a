package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/config"
	"duplex/site"
)

// TestARejoinBackThatCannotStartSaysWhatItIsNot: at a promoted site that
// rejoined the session's primary as its secondary again (a rejoin back),
// a start that fails says it cannot start as the session's secondary,
// naming why. Before, it said "cannot start as the promoted site's
// secondary": this site is the promoted one, and the primary it follows
// is the old primary, which took the session back.
func TestARejoinBackThatCannotStartSaysWhatItIsNot(t *testing.T) {
	dir := t.TempDir()
	path := writeSessionConfig(t, dir, startupSession(dir))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	back := site.RejoinBackDir(cfg)
	if err := os.MkdirAll(back, 0o755); err != nil {
		t.Fatal(err)
	}
	rec := `{"session":"startup","rejoined_at_ns":1,"promoted_at":"then","generation":"00000000000000b1","discarded":{},"delivered":true}`
	if err := os.WriteFile(filepath.Join(back, "rejoin.json"), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	// A state file that does not read: the secondary cannot open.
	if err := os.WriteFile(site.StatePath(cfg), []byte("not a state\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	code := run(t.Context(), []string{"rejoin", "--yes", "--config", path, "--log-level", "error"}, &out, &errb)
	if code != exitFailure {
		t.Fatalf("duplex rejoin --yes with an unreadable state file: exit %d, want 1; stdout %q, stderr %q", code, out.String(), errb.String())
	}
	if strings.Contains(errb.String(), "promoted site's secondary") || !strings.Contains(errb.String(), "cannot start as the session's secondary again") ||
		!strings.Contains(errb.String(), "state") {
		t.Errorf("the rejoin back's failed start says %q: want it to say it cannot start as the session's secondary again, and why, "+
			"not as the promoted site's secondary (this site is the promoted one)", errb.String())
	}
}
