package pair

import (
	"encoding/json"
	"os"
	"testing"

	"duplex/disk"
)

// A pair state that cannot be written (a full disk) leaves the last saved
// state whole, and is written once the disk works again: after a crash then,
// the suspended pair is still suspended with the regions written meanwhile.
func TestPairStateWriteFaultKeepsLastSavedState(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a")
	r.settle()
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}
	in := disk.NewInjector(nil)
	r.opts.FS = in
	r.open()
	if p := r.pair("a"); p.State != Duplex {
		t.Fatalf("a reopened as %s, want duplex", p.State)
	}
	// The suspend is in effect but not durable: its answer says so.
	in.Inject(disk.Fault{Op: disk.OpWrite, Under: r.dir, Err: disk.ENOSPC})
	if err := r.mg.Suspend("a"); !disk.IsFull(err) {
		t.Fatalf("suspend with the pair state on a full disk: %v, want ENOSPC", err)
	}
	r.write("a", twinRegion, 4096)
	if err := r.mg.save(false); !disk.IsFull(err) {
		t.Fatalf("saving the pair state on a full disk: %v, want ENOSPC", err)
	}
	if in.Injected(disk.OpWrite) == 0 {
		t.Fatal("the write fault never fired")
	}
	if got := savedState(t, r.mg.statePath(), "a"); got != Duplex {
		t.Fatalf("state file says %s after a failed save, want the last saved state (duplex)", got)
	}

	in.Clear()
	if err := r.mg.save(false); err != nil {
		t.Fatalf("saving once the disk works: %v", err)
	}
	r.crash()
	if p := r.pair("a"); p.State != Suspended {
		t.Fatalf("after the crash a is %s, want suspended", p.State)
	}
	if !marked(r.pendingRegions("a"), twinRegion) {
		t.Fatal("the region written while suspended is not in the bitmap after the crash")
	}
}

// savedPersisted reads the pair state as it is on disk at path.
func savedPersisted(t *testing.T, path string) persisted {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st persisted
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func savedState(t *testing.T, path, vol string) State {
	t.Helper()
	for _, p := range savedPersisted(t, path).Pairs {
		if p.Volume == vol {
			return p.State
		}
	}
	t.Fatalf("no pair %s in %s", vol, path)
	return ""
}
