package secondary

import (
	"path/filepath"
	"strings"
	"testing"

	"duplex/disk"
	"duplex/transport"
)

// TestAFenceWhoseCheckpointFailedSaysWhatFailed: Fence's checkpoint of the
// applied group fails (EIO on the state file's rename), so the fence holds
// only until a restart and the identity was never written at all. The old
// primary, reconnecting, is refused; the refusal must name what failed (the
// checkpoint of the applied group) and what to do, not blame an identity
// write that never took place.
func TestAFenceWhoseCheckpointFailedSaysWhatFailed(t *testing.T) {
	r := twoGroupsUncheckpointed(t)
	statePath := filepath.Join(r.site, "state.json")
	r.in.Inject(disk.Fault{Op: disk.OpRename, Under: statePath, Err: disk.EIO, Once: true})
	if _, err := r.sec.Fence(); err == nil {
		t.Fatal("Fence returned no error although its checkpoint's rename failed")
	}
	if n := r.in.Injected(disk.OpRename); n != 1 {
		t.Fatalf("%d renames failed, want the checkpoint's one", n)
	}
	_, typ, body := r.dial(r.hello())
	if typ != transport.TypeRefuse {
		t.Fatalf("frame type %d, want a refusal of the primary after the fence", typ)
	}
	reason, err := refusalReason(body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(reason, "identity could not be written") {
		t.Errorf("refusal %q blames the identity, which was never written: the checkpoint of the applied group failed", reason)
	}
	for _, want := range []string{"checkpoint", "applied group", "restart the secondary", "recover again"} {
		if !strings.Contains(reason, want) {
			t.Errorf("refusal %q does not say %q", reason, want)
		}
	}
}
