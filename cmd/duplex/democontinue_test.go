package main

import (
	"strings"
	"testing"
	"time"
)

// TestADemoContinuedVerifies runs the demo twice on one directory, as its
// last line suggests ("run the demo again with --dir to continue it"). The
// second run's workload writes over blocks the first run's writes depend
// on; its check must still find the secondary consistent, as it is.
func TestADemoContinuedVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo twice")
	}
	dir := t.TempDir()
	for run := 1; run <= 2; run++ {
		cmd, out, pw := startDemo(t, "demo", "--dir", dir, "--port-base", "0")
		// Long enough for the workload to write over much of its region.
		for deadline := time.Now().Add(30 * time.Second); strings.Count(out.String(), "consistent as of") < 3; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: no status lines:\n%s", run, out.String())
			}
		}
		interruptDemo(t, cmd, out, pw, 4, "the secondary")
	}
}
