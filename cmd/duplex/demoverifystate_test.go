package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"duplex/config"
	"duplex/workload"
)

// TestDemoVerificationSaysWhichPairsWereNotDuplex: a pair the operator
// suspended (or deleted) while the demo ran and left so at its stop has a
// secondary copy behind the primary, and the verification says so, with
// the command that brings it up to date, rather than "DIFFERS" alone,
// which reads as a lost write. Before, a demo stopped with vol1 suspended
// printed "vol1: secondary DIFFERS from primary" and nothing of why.
func TestDemoVerificationSaysWhichPairsWereNotDuplex(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{Session: "demo", Dir: dir}
	cfg.Primary.Subsystems = []config.Subsystem{{ID: "ss1"}}
	for i, name := range []string{"vol1", "vol2", "vol3"} {
		p, s := filepath.Join(dir, name+".p"), filepath.Join(dir, name+".s")
		writeFile(t, p, bytes.Repeat([]byte{byte(i + 1)}, 4096), 0o644)
		copyOf := bytes.Repeat([]byte{byte(i + 1)}, 4096)
		if name != "vol3" {
			copyOf[0] = 0 // behind the primary
		}
		writeFile(t, s, copyOf, 0o644)
		cfg.Primary.Subsystems[0].Volumes = append(cfg.Primary.Subsystems[0].Volumes, config.Volume{Name: name, Path: p, Size: 4096})
		cfg.Secondary.Volumes = append(cfg.Secondary.Volumes, config.SecondaryVolume{Name: name, Path: s})
	}
	var out bytes.Buffer
	err := verifyDemo([]*config.Config{cfg}, workload.Layout{}, false, map[string]string{"vol1": "suspended", "vol2": ""}, &out)
	if err == nil {
		t.Fatalf("verification passed with two copies behind:\n%s", out.String())
	}
	for _, want := range []string{
		"vol1: secondary DIFFERS from primary: the pair was suspended at the stop",
		"duplex pair resume vol1 --config " + filepath.Join(dir, "duplex.toml") + " --wait",
		"vol2: secondary DIFFERS from primary: vol2 was no pair at the stop",
		"duplex pair add vol2 --config " + filepath.Join(dir, "duplex.toml") + " --wait",
		"vol3: secondary identical to primary",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the verification does not say %q:\n%s", want, out.String())
		}
	}
}
