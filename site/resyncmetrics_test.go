package site

import (
	"bytes"
	"context"
	"sort"
	"strings"
	"testing"
)

// TestResyncProgressInMetrics: while a resync runs, the secondary's
// consistency time stays where it was before the resync began, and the
// operator follows the resync's progress. Status shows it (the primary's
// per-volume copied and size bytes, the secondary's held groups, held bytes
// and volumes resyncing); the metrics, which dashboards and alerts read,
// must show it too. With a pair suspended and written since (a resync to
// come), the primary's metrics must have a figure of what the resyncs copy
// and the secondary's a figure of what it holds for a resync.
func TestResyncProgressInMetrics(t *testing.T) {
	p, s := linkedSitesWithAWrite(t, 4096)
	if err := p.Pairs().Suspend("vol1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(context.Background(), "vol1", bytes.Repeat([]byte{9}, 256<<10), 0); err != nil {
		t.Fatal(err)
	}
	missing := func(site string, names []string, words ...string) {
		for _, n := range names {
			for _, w := range words {
				if strings.Contains(n, w) {
					return
				}
			}
		}
		sort.Strings(names)
		t.Errorf("the %s's metrics have no figure of a resync (no name with %q): %v", site, words, names)
	}
	var pn, sn []string
	for _, sm := range p.Samples() {
		pn = append(pn, sm.Name)
	}
	for _, sm := range s.samples() {
		sn = append(sn, sm.Name)
	}
	missing("primary", pn, "copy", "copied", "resync")
	missing("secondary", sn, "held", "resync")
}
