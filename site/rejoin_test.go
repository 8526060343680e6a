package site

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/control"
	"duplex/disk"
)

// A rejoin plan needs the old primary stopped and sharing history with the
// promoted site; without a pair state at all, every volume is copied whole.
func TestPlanRejoinRefusals(t *testing.T) {
	cfg := linkConfig(t)
	dir := PairStateDir(cfg)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gen, err := openGeneration(dir)
	if err != nil {
		t.Fatal(err)
	}
	other := gen + 1
	if _, err := PlanRejoin(cfg, control.Changes{Follows: other.String()}); err == nil || !strings.Contains(err.Error(), "histories do not meet") {
		t.Errorf("rejoin of another generation: %v, want a refusal saying the histories do not meet", err)
	}

	lock, err := disk.Or(nil).Lock(filepath.Join(dir, stateLockName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PlanRejoin(cfg, control.Changes{Follows: gen.String()}); err == nil || !strings.Contains(err.Error(), "stop the primary") {
		t.Errorf("rejoin while the primary runs: %v, want a refusal", err)
	}
	lock.Close()

	// No pairs.json: the old primary never ran a pair, nothing says which
	// regions it holds.
	plan, err := PlanRejoin(cfg, control.Changes{Follows: gen.String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != len(cfg.VolumeNames()) {
		t.Fatalf("a plan of %d volumes, want %d", len(plan), len(cfg.VolumeNames()))
	}
	for _, v := range plan {
		if v.Copy != v.Size || v.Whole == "" {
			t.Errorf("%s: copy %d of %d (%q), want the whole volume with the reason", v.Name, v.Copy, v.Size, v.Whole)
		}
	}
}
