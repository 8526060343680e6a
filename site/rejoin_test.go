package site

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/config"
	"duplex/control"
	"duplex/disk"
	"duplex/transport"
)

// A rejoin plan needs the old primary stopped and sharing history with the
// promoted site; without a pair state at all, every volume is copied whole.
func TestPlanRejoinRefusals(t *testing.T) {
	cfg, dir, gen := oldPrimaryPairState(t)
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

// A damaged data generation at the old primary is refused as damaged,
// naming the file: read as generation 0, the plan said the histories do
// not meet and only a full copy would do.
func TestPlanRejoinOfADamagedGeneration(t *testing.T) {
	for name, content := range map[string]string{"null": "null\n", "{}": "{}\n", "cut short": `{"generation":"0a`, "zeros": "\x00\x00\x00\x00"} {
		t.Run(name, func(t *testing.T) {
			cfg, dir, gen := oldPrimaryPairState(t)
			path := filepath.Join(dir, "generation.json")
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := PlanRejoin(cfg, control.Changes{Follows: gen.String()})
			if !errors.Is(err, disk.ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "put back a copy") {
				t.Errorf("rejoin with %s damaged (%q): %v, want it refused as damaged, naming the file and what to do", path, content, err)
			}
		})
	}
}

// oldPrimaryPairState is a config and, in dir, the pair state of a primary
// that has only its data generation, gen.
func oldPrimaryPairState(t *testing.T) (cfg *config.Config, dir string, gen transport.Generation) {
	t.Helper()
	cfg = linkConfig(t)
	dir = PairStateDir(cfg)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gen, err := openGeneration(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, dir, gen
}
