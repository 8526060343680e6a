package main

import (
	"errors"
	"os"
	"strings"
	"testing"

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
	path, cfg := rejoinedOldPrimary(t)
	serve := func(what string) (string, string) {
		out, errb, _ := promoteUntil(t, path, what, "serving ")
		return out, errb
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
