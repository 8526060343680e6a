package secondary

import (
	"testing"

	"duplex/disk"
	"duplex/transport"
)

// TestFencedSecondaryTellsTheOldPrimaryWhy: recover fences a running
// secondary, but the identity write that records the fence fails (the
// fence then holds until a restart, as Fence's error says). The old
// primary, reconnecting with the data generation it always had, is refused,
// and must be told why: its operator sees only the refusal's reason.
func TestFencedSecondaryTellsTheOldPrimaryWhy(t *testing.T) {
	r := newIdentityRig(t)
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	conn.Close()
	// The identity (and the state file beside it) cannot be written.
	r.in.Inject(disk.Fault{Op: disk.OpRename, Under: r.site, Err: disk.EIO})
	if _, err := r.sec.Fence(); err == nil {
		t.Fatal("Fence succeeded though nothing could be recorded")
	} else {
		t.Logf("Fence: %v", err)
	}
	_, typ, body := r.dial(r.hello())
	if typ != transport.TypeRefuse {
		t.Fatalf("the old primary after the fence: frame type %d, want a refusal", typ)
	}
	reason, err := refusalReason(body)
	if err != nil {
		t.Fatal(err)
	}
	if reason == "" {
		t.Fatalf("the fenced secondary refuses the old primary with an empty reason: its operator is not told that recover fenced the secondary")
	}
}
