package e2e

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"duplex/config"
)

// TestLibnbdReadsDuringTheInitialCopy writes, zeroes (with and without
// NO_HOLE) and trims a primary volume full of data with libnbd's client
// while its initial copy runs, held back by copy_rate_limit, 32 commands in
// flight at a time over two connections, each in a slot of its own, and
// reads the whole volume back after every round (testdata/nbdmix.py
// --disjoint): every read returns what was last written, whatever the copy
// read meanwhile. Once the pairs are duplex and the primary drained, the
// secondary holds exactly what the client last read.
func TestLibnbdReadsDuringTheInitialCopy(t *testing.T) {
	t.Parallel()
	needLibnbdPython(t)
	const volSize = 16 << 20
	s := newSession(t, sessionOpts{name: "e2e-nbdmixcopy", volSize: volSize, edit: func(c *config.Config) {
		c.Primary.CopyRateLimit = 8 * config.MiB
	}})
	// The primary's images exist, full of data, before the session does.
	data := make([]byte, volSize)
	for _, name := range []string{"vol1", "vol3"} {
		rand.Read(data)
		p, _ := s.volumePaths(name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.startSecondary()
	s.startPrimary()
	pending := func() []string {
		var names []string
		for _, v := range s.primaryStatus().Volumes {
			if v.State == "pending" {
				names = append(names, v.Name)
			}
		}
		return names
	}
	if p := pending(); len(p) == 0 {
		t.Fatalf("no pair is pending its initial copy once the primary started")
	}

	uri := nbdURI(s.cfg.Primary.NBD, "vol1")
	final := filepath.Join(t.TempDir(), "final")
	m := startMix(t, uri, uri, "--start", "0", "--span", fmt.Sprint(volSize), "--rounds", "8", "--depth", "32",
		"--seed", "5", "--disjoint", "--final", final)
	if err := m.wait(); err != nil {
		t.Fatalf("nbdmix.py: %v\n%s", err, m.out.String())
	}
	// Under load the copy may have ended before the last rounds: the
	// check holds for the rounds before it, and says so.
	t.Logf("pairs still pending their initial copy once the client was done: %v", pending())
	want, err := os.ReadFile(final)
	if err != nil || len(want) != volSize {
		t.Fatalf("what the client read back: %d bytes (%v), want %d", len(want), err, volSize)
	}

	s.waitLinked()
	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()
	_, sec := s.volumePaths("vol1")
	got, err := os.ReadFile(sec)
	if err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Errorf("the secondary's vol1 at %d: %q, the client last read %q", i, snippet(got, i), snippet(want, i))
	}
}
