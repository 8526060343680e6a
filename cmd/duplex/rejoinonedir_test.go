package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/site"
)

// TestRejoinWithBothSitesInOneDirectoryNamesTheOldPrimarysRejoin: with
// both sites' files in one directory (the demo's layout), duplex rejoin at
// the promoted site, which ran as the primary of the reverse direction,
// finds the old primary's rejoin record beside its own pair state. Its
// report must say whose rejoin that is, and that the promoted site here
// runs by duplex promote, not that "this site rejoined the promoted site"
// and runs as its secondary with --yes.
func TestRejoinWithBothSitesInOneDirectoryNamesTheOldPrimarysRejoin(t *testing.T) {
	path, cfg := rejoinedOldPrimary(t)
	rev := site.ReverseDir(cfg)
	if err := os.MkdirAll(rev, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"pairs.json": `{"clean":true,"pairs":{}}`, "generation.json": `{"generation":"00000000000000b1"}`} {
		if err := os.WriteFile(filepath.Join(rev, name), []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb strings.Builder
	code := run(t.Context(), []string{"rejoin", "--config", path, "--log-level", "error"}, &out, &errb)
	t.Logf("duplex rejoin: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"the old primary (its pair state in " + site.PairStateDir(cfg) + ") rejoined the promoted site",
		"duplex promote --config " + path, "run again with --yes to run the old primary as its secondary"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "this site rejoined") {
		t.Errorf("the report says this site rejoined, at the promoted site's files:\n%s", out.String())
	}
}
