package secondary

import (
	"sync/atomic"
	"testing"
	"time"

	"duplex/apply"
)

// countedWriteback is a volume that counts the writebacks started on it.
type countedWriteback struct {
	apply.Target
	started *atomic.Int64
}

func (c countedWriteback) StartWriteback() error {
	c.started.Add(1)
	if w, ok := c.Target.(apply.WritebackStarter); ok {
		return w.StartWriteback()
	}
	return nil
}

// The writes of a group applied through the Gate's limit have their
// writeback started, as a whole group's do: a coupled secondary may apply
// a long group in prefixes for a while, and the checkpoint's fsync that
// follows it would otherwise find all of them dirty at once, and hold up
// the journal's fsync beside it (bench/RESULTS.md).
func TestAPrefixAppliedStartsItsWriteback(t *testing.T) {
	gate := newTestGate(0)
	r := openGateRig(t, t.TempDir(), gate)
	defer r.close(t)
	var started atomic.Int64
	r.sec.view.Lock()
	r.sec.targets["vol1"] = countedWriteback{Target: r.sec.targets["vol1"], started: &started}
	r.sec.view.Unlock()
	r.send(t, 1)
	waitGate(t, "group 1 journaled", func() bool { return r.sec.Stats().JournaledGroup >= 1 })
	limit := int64(time.Millisecond) - 2 // the first write of group 1
	gate.set(limit)
	waitGate(t, "group 1 applied through the limit", func() bool { return r.sec.Stats().Time == limit })
	waitGate(t, "the writeback of the prefix started", func() bool { return started.Load() > 0 })
	if st := r.sec.Stats(); st.Group != 0 {
		t.Fatalf("applied group %d, want 0: group 1 only through the limit", st.Group)
	}
}
