package secondary

import (
	"context"
	"slices"
	"testing"

	"duplex/transport"
)

// relink links the test primary again after its link was cut, and counts
// the acknowledgements on the new link.
func (r *gateRig) relink(t *testing.T) transport.Position {
	t.Helper()
	conn, w := r.link(t, context.Background())
	r.countAcks(conn)
	return w
}

// A coupled secondary fenced while the Gate holds groups journaled past
// its limit fences at the limit, and the applier passes over the groups
// after it. A promotion that fails after the fence undoes it (UndoFence)
// and the primary replicates here again: the Gate must hold the groups it
// passed over and those sent since, and apply each, in order, as the
// limit reaches it. Left stopped, it passed over every later group: they
// were journaled and acknowledged, but never applied while the process
// ran, and status and read views stayed at the fence.
func TestUndoneFenceGateAppliesAgain(t *testing.T) {
	dir := t.TempDir()
	gate := newTestGate(0)
	applied := &appliedLog{}
	r := openGateRigConfig(t, dir, gate, applied.config)
	defer func() { r.close(t) }()
	r.sendAhead(t, 1, aheadGroups)
	// Through group 10 and the first write of group 11.
	limit := ms(11) - 2
	gate.set(limit)
	waitGate(t, "groups applied through the limit", func() bool { st := r.sec.Stats(); return st.Group == 10 && st.Time == limit })

	pos, err := r.sec.Fence()
	if err != nil {
		t.Fatal(err)
	}
	if pos.Group != 10 {
		t.Fatalf("fenced at group %d, want 10, the limit", pos.Group)
	}
	if err := r.sec.UndoFence(); err != nil {
		t.Fatal(err)
	}
	if w := r.relink(t); w.Group != aheadGroups {
		t.Fatalf("welcomed again at group %d, want %d", w.Group, aheadGroups)
	}

	// The groups journaled ahead before the fence are applied as the
	// limit reaches them.
	limit = ms(20) - 1
	gate.set(limit)
	waitGate(t, "groups journaled before the fence applied through the raised limit", func() bool {
		st := r.sec.Stats()
		return st.Group == 19 && st.Time == limit
	})
	if got := blocksHeld(t, r.sec, aheadGroups); !slices.Equal(got, want(aheadGroups, limit)) {
		t.Fatalf("limit %d: the volume holds %v, want %v", limit, got, want(aheadGroups, limit))
	}

	// And so are those sent after the fence was undone.
	const last = aheadGroups + 10
	r.sendAhead(t, aheadGroups+1, last)
	gate.set(ms(last))
	waitGate(t, "every acknowledged group applied", func() bool { return r.sec.Stats().Group == last })
	applied.check(t, 1, last)
	if got := blocksHeld(t, r.sec, last); !slices.Equal(got, want(last, ms(last))) {
		t.Fatalf("every group applied: the volume holds %v, want %v", got, want(last, ms(last)))
	}
	if st := r.sec.Stats(); st.GatedGroups != 0 || st.Stopped != "" {
		t.Fatalf("every group applied, yet %d gated, stopped %q", st.GatedGroups, st.Stopped)
	}
}
