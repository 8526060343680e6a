package main

import (
	"strings"
	"testing"
)

// TestDrillUsage: drill takes start or stop, --at only with start and only
// a time recover --at takes, all checked before the config is read.
func TestDrillUsage(t *testing.T) {
	for _, args := range [][]string{
		{"drill", "--config", "none.toml"},
		{"drill", "begin", "--config", "none.toml"},
		{"drill", "start", "stop", "--config", "none.toml"},
		{"drill", "stop", "--at", "-15m", "--config", "none.toml"},
		{"drill", "start", "--at", "yesterday", "--config", "none.toml"},
	} {
		code, _, errs := runCmd(args...)
		if code != exitUsage || !strings.Contains(errs, "drill") {
			t.Errorf("duplex %s: exit %d, stderr %q; want a usage error", strings.Join(args, " "), code, errs)
		}
	}
}
