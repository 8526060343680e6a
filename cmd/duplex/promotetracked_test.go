package main

import (
	"path/filepath"
	"strings"
	"testing"
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
			_, out, stop := startPromote(t, writeSessionConfig(t, dir, c))
			stop()
			t.Logf("promote: %s", out)
			if strings.Contains(out.String(), "since  ") || !strings.Contains(out.String(), "written since the promotion at 20") {
				t.Errorf("promote does not say since when the regions written are tracked:\n%s", out)
			}
		})
	}
}
