package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"duplex/bitmap"
	"duplex/config"
	"duplex/nbd"
	"duplex/site"
)

// TestReversePrimaryNeverRejoinedStopsCleanly: the promoted site run as
// the primary of the reverse direction, the old primary never rejoined
// (nothing listens at [primary] listen), stops on SIGTERM at once and
// exits 0: its pairs are suspended, so what it holds for the old primary
// is only their markers, which every start announces again from the pair
// state, and a write since the promotion is in the changed regions the
// rejoin copies. The stop saves the pair state clean, the write's regions
// kept; a second run stops as promptly.
func TestReversePrimaryNeverRejoinedStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	c := startupSession(dir)
	c.Secondary.Control = ""
	c.Primary.Listen, c.Primary.Journal = "127.0.0.1:1", filepath.Join(dir, "primary", "journal")
	path := writeSessionConfig(t, dir, c)
	cfg := firstStart(t, path)
	// Well within unreachablePatience (10s), which a drain waits for a
	// link that never comes up.
	const prompt = 5 * time.Second
	for _, run := range []string{"the first run", "a second run"} {
		addr, _, stop := startPromote(t, path)
		if run == "the first run" {
			cl, err := nbd.Dial(addr, "vol1")
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.WriteAt(bytes.Repeat([]byte{0x5a}, 4096), 3*bitmap.DefaultRegion-2048); err != nil { // two regions
				t.Fatal(err)
			}
			cl.Close()
		}
		start := time.Now()
		code := stop()
		took := time.Since(start)
		if code != exitOK || took > prompt {
			t.Fatalf("%s: the reverse primary, never rejoined, stopped with exit %d after %s; want exit 0 within %s", run, code, took.Round(time.Millisecond), prompt)
		}
		b, err := os.ReadFile(filepath.Join(site.ReverseDir(cfg), "pairs.json"))
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Clean bool `json:"clean"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		if !st.Clean {
			t.Errorf("%s: the stop saved the pair state not clean: %s", run, b)
		}
		b, err = os.ReadFile(filepath.Join(site.ReverseDir(cfg), "vol1.bitmap"))
		if err != nil {
			t.Fatal(err)
		}
		bm, err := bitmap.Decode(b, int64(config.MiB))
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for r, _, _, ok := bm.Next(0); ok; r, _, _, ok = bm.Next(r + 1) {
			got = append(got, r)
		}
		if len(got) != 2 || got[0] != 2 || got[1] != 3 {
			t.Errorf("%s: vol1's changed regions for the rejoin are %v, want [2 3]", run, got)
		}
	}
}
