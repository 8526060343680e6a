package pair

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/actlog"
	"duplex/disk"
)

// TestALogKeptAfterAFailedFallbackIsNotRecordedOff: the activity log and
// the pair state both fail for a moment: a write's mark fails, and so
// does the save that would let the run go on without the log, so the
// write fails and the log stays on. Once the disk works again, the log
// is kept and marks every acknowledged write: the state saved next must
// not say the run has no log (status says the log is on, and a kill -9
// would copy every pair in full for nothing).
func TestALogKeptAfterAFailedFallbackIsNotRecordedOff(t *testing.T) {
	in := disk.NewInjector(nil)
	r := newRigOn(t, in, 4*twinRegion, 8<<20, "a")
	r.opts.FS = in
	r.open() // the pair state on the failing disk too
	r.settle()
	r.saveAndClean()
	in.Inject(disk.Fault{Op: disk.OpWrite, Under: r.dir, Err: disk.EIO})
	if err := (actlog.WritePath{Log: r.al}).Mark("a", 0, 4096); err == nil {
		t.Fatal("setup: a mark, neither the log nor the pair state writable, went on")
	}
	in.Clear()
	if err := (actlog.WritePath{Log: r.al}).Mark("a", 0, 4096); err != nil || r.al.Off() != nil {
		t.Fatalf("a mark, the disk working again: %v, log off %v; want it marked, the log on", err, r.al.Off())
	}
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(r.dir, "pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"no_activity_log":true`) {
		t.Fatalf("pair state %s, the log kept: want it not to say the run has no log", b)
	}
}
