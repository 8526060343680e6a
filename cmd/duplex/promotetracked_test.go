package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/internal/testenv"
)

// TestPromoteWithNoGroupAppliedSaysSinceWhenItTracks: the first promote
// of a secondary that never applied a group, as the promoted site and as
// the primary of the reverse direction, says since when the regions
// written are tracked: the promotion, there being no consistency time.
func TestPromoteWithNoGroupAppliedSaysSinceWhenItTracks(t *testing.T) {
	for _, reverse := range []bool{false, true} {
		name := "promoted site"
		if reverse {
			name = "reverse primary"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			c := startupSession(dir)
			c.Secondary.Control = ""
			if reverse {
				c.Primary.Listen, c.Primary.Journal = "127.0.0.1:0", filepath.Join(dir, "primary", "journal")
			}
			path := writeSessionConfig(t, dir, c)
			firstStart(t, path)
			out := promoteUntilServing(t, path)
			t.Logf("promote: %s", out)
			if strings.Contains(out, "since  ") || !strings.Contains(out, "written since the promotion at 20") {
				t.Errorf("promote does not say since when the regions written are tracked:\n%s", out)
			}
		})
	}
}

// promoteUntilServing runs duplex promote until it says what it serves,
// stops it (its exit status aside: TestReversePrimaryNeverRejoinedStopsCleanly
// checks that of the reverse direction's primary never linked), and returns
// what it said.
func promoteUntilServing(t *testing.T, path string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb testenv.LogBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"promote", "--config", path, "--log-level", "error", "--drain-timeout", "1s"}, &out, &errb)
	}()
	defer func() {
		cancel()
		<-done
	}()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "are tracked"); time.Sleep(10 * time.Millisecond) {
		select {
		case code := <-done:
			done <- code
			t.Fatalf("duplex promote exited %d before serving: stdout %q, stderr %q", code, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("duplex promote does not serve within 30s: stdout %q, stderr %q", out.String(), errb.String())
		}
	}
	return out.String()
}
