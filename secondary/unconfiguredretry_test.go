package secondary

import (
	"errors"
	"sync/atomic"
	"testing"

	"duplex/apply"
	"duplex/transport"
)

// failingOnceTarget fails the first write at off, as a disk's passing
// fault.
type failingOnceTarget struct {
	apply.Target
	off    int64
	failed *atomic.Bool
}

func (t failingOnceTarget) WriteAt(p []byte, off int64) error {
	if off == t.off && t.failed.CompareAndSwap(false, true) {
		return errors.New("injected: input/output error")
	}
	return t.Target.WriteAt(p, off)
}

// TestTheWaitingGroupsAppliedAgainAfterAFailureGoOnFromWhereItStopped:
// the apply of the groups that waited fails at group 4 (a disk's passing
// fault), group 3 applied: the primary is refused and vol1 is not read.
// The next primary's link applies group 4 alone and moves the applied
// position to it: the secondary reports group 4, as its volumes hold, and
// records it. Before, the second apply began its jobs at group 3's, which
// group 4 never matched: group 4 was written but the position stayed at
// group 3, status said consistent as of group 3 over a volume that held
// group 4, and the state file named group 3.
func TestTheWaitingGroupsAppliedAgainAfterAFailureGoOnFromWhereItStopped(t *testing.T) {
	r := withoutVol2(t, killedWithGroupsUnapplied(t))
	var failed atomic.Bool
	r.sec.targets["vol1"] = failingOnceTarget{Target: r.sec.targets["vol1"], off: 12288, failed: &failed}
	without := r.hello()
	without.Instance = 9
	if _, typ, _ := r.dial(without); typ != transport.TypeRefuse {
		t.Fatalf("the primary without vol2, group 4's write failing: frame type %d, want a refusal", typ)
	}
	if !failed.Load() {
		t.Fatal("group 4's write was never tried")
	}
	if _, err := readsBoth(r); err == nil {
		t.Error("vol1 read after the apply failed part-way")
	}
	if _, typ, body := r.dial(without); typ != transport.TypeWelcome {
		reason, _ := refusalReason(body)
		t.Fatalf("the primary again: frame type %d (%q), want a welcome", typ, reason)
	}
	if st := r.sec.Stats(); st.Group != 4 || st.Time < 40_000 {
		t.Errorf("applied again: the secondary reports group %d time %d, want group 4, time 40000 or later", st.Group, st.Time)
	}
	if p, err := readsBoth(r); err != nil {
		t.Errorf("vol1 applied again: %v", err)
	} else if why := atGroup4(p); why != "" {
		t.Errorf("vol1 applied again: %s", why)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if st, err := apply.ReadState(r.config().StatePath); err != nil || st.Group != 4 {
		t.Errorf("stopped, the state file names group %d (%v), want 4", st.Group, err)
	}
}

// TestAFailedWaitingGroupsApplySaysItPasses: the apply of the groups that
// waited fails part-way at a primary's link (group 4's write, a disk's
// passing fault): the primary is refused, and its next dial, with no
// operator acting, applies the rest and is welcomed. The refusal says it
// passes, so that a stop of the primary meanwhile waits for that dial, as
// for a link that comes back, not gives up at once and saves itself
// unclean, which has its next start copy the activity log's regions.
func TestAFailedWaitingGroupsApplySaysItPasses(t *testing.T) {
	r := withoutVol2(t, killedWithGroupsUnapplied(t))
	var failed atomic.Bool
	r.sec.targets["vol1"] = failingOnceTarget{Target: r.sec.targets["vol1"], off: 12288, failed: &failed}
	without := r.hello()
	without.Instance = 9
	_, typ, body := r.dial(without)
	if typ != transport.TypeRefuse {
		t.Fatalf("the primary without vol2, group 4's write failing: frame type %d, want a refusal", typ)
	}
	refusal, err := transport.DecodeRefuse(body)
	if err != nil {
		t.Fatal(err)
	}
	if _, typ, _ := r.dial(without); typ != transport.TypeWelcome {
		t.Fatalf("the primary's next dial: frame type %d, want a welcome", typ)
	}
	if !refusal.Passing {
		t.Errorf("refused %q as lasting, and the primary's next dial was welcomed with no operator acting", refusal.Reason)
	}
}
