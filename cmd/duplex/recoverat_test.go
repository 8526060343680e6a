package main

import (
	"strings"
	"testing"
	"time"

	"duplex/config"
)

func TestParseAt(t *testing.T) {
	now := time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"-15m":                           now.Add(-15 * time.Minute),
		"-1h30m":                         now.Add(-90 * time.Minute),
		"-0s":                            now,
		"2026-12-03T03:12:36Z":           time.Date(2026, 12, 3, 3, 12, 36, 0, time.UTC),
		"2026-12-03T04:12:36.5+01:00":    time.Date(2026, 12, 3, 3, 12, 36, 5e8, time.UTC),
		"2026-12-03T03:12:36.123456789Z": time.Date(2026, 12, 3, 3, 12, 36, 123456789, time.UTC),
	} {
		got, err := parseAt(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseAt(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"15m", "-15", "yesterday", "2026-12-03 03:12:36", "-"} {
		if _, err := parseAt(in, now); err == nil || !strings.Contains(err.Error(), "--at") {
			t.Errorf("parseAt(%q): err = %v, want one naming --at", in, err)
		}
	}
}

// TestRecoverAtWithoutHistory: recover --at is refused, before anything is
// opened, at a secondary whose config keeps no history: the config lacks
// what --at reads, bad usage (exit 2) as --coupled without [coupling] is,
// naming the config and how to turn the history on; a bad TIME, or --at
// with --coupled, is bad usage. Before: exit 1.
func TestRecoverAtWithoutHistory(t *testing.T) {
	dir := t.TempDir()
	c := startupSession(dir)
	c.Secondary.Control = ""
	path := writeSessionConfig(t, dir, c)
	code, out, errs := runCmd("recover", "--config", path, "--at", "-15m")
	if code != exitUsage || !strings.Contains(errs, "--config "+path+": sets no [secondary] history") || !strings.Contains(errs, `set history = "24h"`) {
		t.Errorf("recover --at without history: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = runCmd("recover", "--config", path, "--at", "soon")
	if code != exitUsage || !strings.Contains(errs, "--at") {
		t.Errorf("recover --at soon: exit %d, stdout %q, stderr %q; want bad usage", code, out, errs)
	}
	code, out, errs = runCmd("recover", "--config", path, "--at", "-15m", "--coupled")
	if code != exitUsage || !strings.Contains(errs, "--at and --coupled") {
		t.Errorf("recover --at --coupled: exit %d, stdout %q, stderr %q; want bad usage", code, out, errs)
	}
}

// TestAnEmptyAtIsRefused: --at "" (a script's --at "$T" with T unset) is
// refused as bad usage, naming --at, before anything is opened: read as
// left out, recover would apply every journaled group, the newest state
// rather than the past one asked for, and drill start would show the
// group applied now. Before: recover --at "" recovered to the newest
// group, exit 0.
func TestAnEmptyAtIsRefused(t *testing.T) {
	dir := t.TempDir()
	c := startupSession(dir)
	c.Secondary.Control = ""
	c.Secondary.History = config.Duration(time.Hour)
	path := writeSessionConfig(t, dir, c)
	for _, args := range [][]string{
		{"recover", "--config", path, "--at", ""},
		{"recover", "--config", path, "--at="},
		{"drill", "start", "--config", path, "--at", ""},
	} {
		code, out, errs := runCmd(args...)
		if code != exitUsage || !strings.Contains(errs, "--at: empty") || out != "" {
			t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit %d, --at refused as empty, nothing done", strings.Join(args, " "), code, out, errs, exitUsage)
		}
	}
}
