package main

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// TestTheDemosFailedStopSaysBothSites: a demo whose primary's stop fails
// (the secondary gone, a write held) and whose secondary's stop failed too
// (its disk) says both, the primary's first, on the one line the demo
// exits 1 with: the secondary's error, dropped, left its disk's failure
// unsaid behind the primary's.
func TestTheDemosFailedStopSaysBothSites(t *testing.T) {
	// As the secondary's run ends on a disk that failed.
	secErr := fmt.Errorf("journal: sync: %w", syscall.EIO)
	d := demoSecondaryGone(t, secErr)
	_, err := d.stop(false)
	if err == nil {
		t.Fatal("the demo's stop with its secondary gone and a write held: no error")
	}
	var stderr bytes.Buffer
	code := exitStatus(&stderr, err)
	line := stderr.String()
	p, s := strings.Index(line, "primary: "), strings.Index(line, "secondary: "+secErr.Error())
	if code != exitFailure || p < 0 || s < p || strings.Count(line, "\n") != 1 {
		t.Errorf("the demo's failed stop: exit %d, %q; want exit %d and one line saying the primary's error, then the secondary's (%q)", code, line, exitFailure, secErr)
	}
}
