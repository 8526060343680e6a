package pair

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/actlog"
	"duplex/disk"
)

// TestAMarkThatFailsAfterTheCleanStopKeepsItClean: the primary stops
// cleanly, its pair state saved as such, and only then does a copy left
// to its mark (its copier stopped, the mark waiting on the log's disk)
// find the log failing, before the log is closed. Its copy fails, its
// region still to copy in the state saved; the state must stay a clean
// stop's, not become a run without log killed, which copies every pair
// in full at the next start.
func TestAMarkThatFailsAfterTheCleanStopKeepsItClean(t *testing.T) {
	in := disk.NewInjector(nil)
	r := newRigOn(t, in, 4*twinRegion, 8<<20, "a", "b")
	r.settle()
	r.saveAndClean()
	if err := r.mg.Close(true); err != nil {
		t.Fatal(err)
	}
	in.Inject(disk.Fault{Op: disk.OpWrite, Under: r.logPath(), Err: disk.EIO})
	if err := (actlog.WritePath{Log: r.al}).MarkCopy("a", twinRegion, 4096); !errors.Is(err, actlog.ErrWrite) {
		t.Errorf("a copy's mark after the clean stop, the log failing: %v, want it to fail", err)
	}
	b, err := os.ReadFile(filepath.Join(r.dir, "pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"clean":true`) || strings.Contains(string(b), `"no_activity_log":true`) {
		t.Fatalf("pair state after a clean stop and a late mark that failed: %s, want it still clean, with the log", b)
	}
}
