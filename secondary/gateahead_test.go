package secondary

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/consistency"
)

// aheadGroups is how many groups the tests below send while the Gate
// holds: far more than the applier's queue holds.
const aheadGroups = 40

// appliedLog records the groups applied, in order, and checks at each
// that the volume holds exactly the writes stamped at or before its time:
// the groups are applied whole and one after the other.
type appliedLog struct {
	mu     sync.Mutex
	groups []uint64
	bad    []string
}

// config has the secondary report each group applied to l.
func (l *appliedLog) config(c *Config) {
	v := c.Volumes["vol1"]
	c.OnApplied = func(g *consistency.Group) {
		var held []bool
		b := make([]byte, 4096)
		for blk := uint64(2); blk <= 2*aheadGroups+1; blk++ {
			// Readers are excluded: the volume is read directly.
			if err := v.ReadAt(b, int64(blk*4096)); err != nil {
				panic(err)
			}
			held = append(held, b[0] == byte(blk/2))
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.groups = append(l.groups, g.Number)
		if w := want(aheadGroups, g.Time); !slices.Equal(held, w) {
			l.bad = append(l.bad, fmt.Sprintf("group %d applied: the volume holds %v, want %v", g.Number, held, w))
		}
	}
}

// reset forgets the groups applied so far.
func (l *appliedLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.groups, l.bad = nil, nil
}

// check fails t unless the groups applied are first..last, in order, each
// leaving the volume as of its time.
func (l *appliedLog) check(t *testing.T, first, last uint64) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.bad {
		t.Error(b)
	}
	var w []uint64
	for g := first; g <= last; g++ {
		w = append(w, g)
	}
	if !slices.Equal(l.groups, w) {
		t.Fatalf("groups applied %v, want %d to %d in order", l.groups, first, last)
	}
}

func ms(n uint64) int64 { return int64(n) * int64(time.Millisecond) }

// sendAhead sends record sets first..last and waits until the secondary
// acknowledged every one.
func (r *gateRig) sendAhead(t *testing.T, first, last uint64) {
	t.Helper()
	for seq := first; seq <= last; seq++ {
		r.send(t, seq)
	}
	waitGate(t, fmt.Sprintf("groups through %d acknowledged while the Gate holds", last), func() bool { return r.acked.Load() >= last })
}

// A coupled secondary the Gate holds (another member silent, etcd
// unreachable, a member not started yet) goes on journaling and
// acknowledging groups, however many, and welcomes a primary that links
// meanwhile: the groups wait in the journal, not in the applier's queue,
// which held two, after which the secondary acknowledged nothing more and
// a new link waited for its Welcome for as long as the Gate held. Once the
// limit rises it applies them, in order, each whole, and the part of the
// one straddling the limit through it.
func TestGateHeldSecondaryJournalsAhead(t *testing.T) {
	dir := t.TempDir()
	gate := newTestGate(0)
	applied := &appliedLog{}
	r := openGateRigConfig(t, dir, gate, applied.config)
	defer func() { r.close(t) }()
	r.sendAhead(t, 1, aheadGroups)
	if st := r.sec.Stats(); st.Group != 0 || st.JournaledGroup != aheadGroups || st.GatedGroups != aheadGroups || st.Stopped != "" {
		t.Fatalf("held: applied group %d, journaled %d, gated %d, stopped %q; want 0, %d, %d, running",
			st.Group, st.JournaledGroup, st.GatedGroups, st.Stopped, aheadGroups, aheadGroups)
	}
	if got := blocksHeld(t, r.sec, aheadGroups); !slices.Equal(got, want(aheadGroups, 0)) {
		t.Fatalf("held at limit 0: the volume holds %v", got)
	}

	// The primary links again (its link dropped): welcomed at once, at
	// what is journaled.
	conn, w := r.link(t, context.Background())
	defer conn.Close()
	if w.Group != aheadGroups {
		t.Fatalf("welcomed at group %d, want %d", w.Group, aheadGroups)
	}

	// Through group 19 and the first write of group 20.
	limit := ms(20) - 2
	gate.set(limit)
	waitGate(t, "groups applied through the limit", func() bool { st := r.sec.Stats(); return st.Group == 19 && st.Time == limit })
	if got := blocksHeld(t, r.sec, aheadGroups); !slices.Equal(got, want(aheadGroups, limit)) {
		t.Fatalf("limit %d: the volume holds %v, want %v", limit, got, want(aheadGroups, limit))
	}
	gate.set(ms(aheadGroups))
	waitGate(t, "every group applied", func() bool { return r.sec.Stats().Group == aheadGroups })
	applied.check(t, 1, aheadGroups)
	if st := r.sec.Stats(); st.GatedGroups != 0 {
		t.Fatalf("every group applied, yet %d gated", st.GatedGroups)
	}
}

// A held secondary killed with groups journaled ahead replays, at its
// next start, through the limit (the mark a coupled secondary keeps beside
// its state file) and no further, and applies the rest as the limit
// rises, a group at a time: not only once it passes the last one.
func TestGateJournaledAheadAfterAKill(t *testing.T) {
	dir := t.TempDir()
	gate := newTestGate(0)
	r := openGateRigConfig(t, dir, gate, nil)
	r.sendAhead(t, 1, aheadGroups)
	limit := ms(11) - 2
	gate.set(limit)
	waitGate(t, "groups applied through the limit", func() bool { st := r.sec.Stats(); return st.Group == 10 && st.Time == limit })
	// Group 10 is checkpointed before the kill, so that this secondary
	// writes nothing once the next one opens.
	if err := r.sec.checkpoint(); err != nil {
		t.Fatal(err)
	}
	// kill -9: nothing more is applied or checkpointed (Run's end stops
	// its Gate), and Close is never called; the journal's lock goes with
	// the process.
	r.cancel()
	r.wg.Wait()
	r.sec.journal.Close()
	r.vol.Close()

	applied := &appliedLog{}
	gate = newTestGate(limit)
	r = openGateRigConfig(t, dir, gate, applied.config)
	defer func() { r.close(t) }()
	// What the restart replayed of the groups through 10 is not counted.
	applied.reset()
	if st := r.sec.Stats(); st.Group != 10 || st.Time != limit || st.JournaledGroup != aheadGroups || st.GatedGroups != aheadGroups-10 {
		t.Fatalf("restarted: applied group %d at %d, journaled %d, gated %d; want 10 at %d, %d, %d",
			st.Group, st.Time, st.JournaledGroup, st.GatedGroups, limit, aheadGroups, aheadGroups-10)
	}
	if got := blocksHeld(t, r.sec, aheadGroups); !slices.Equal(got, want(aheadGroups, limit)) {
		t.Fatalf("restarted at limit %d: the volume holds %v, want %v", limit, got, want(aheadGroups, limit))
	}
	// Both writes of group 25, not its time.
	limit = ms(25) - 1
	gate.set(limit)
	waitGate(t, "groups applied through the raised limit", func() bool { st := r.sec.Stats(); return st.Group == 24 && st.Time == limit })
	if got := blocksHeld(t, r.sec, aheadGroups); !slices.Equal(got, want(aheadGroups, limit)) {
		t.Fatalf("limit %d: the volume holds %v, want %v", limit, got, want(aheadGroups, limit))
	}
	// The primary goes on from what is journaled.
	r.sendAhead(t, aheadGroups+1, aheadGroups+2)
	gate.set(ms(aheadGroups + 2))
	waitGate(t, "every group applied", func() bool { return r.sec.Stats().Group == aheadGroups+2 })
	applied.check(t, 11, aheadGroups+2)
}

// A fence of a secondary with groups journaled ahead returns at once, at
// the limit, and a recovery to a time between the groups applied from the
// journal finds each of them, in the history, as a point of its own.
func TestGateJournaledAheadFenceAndRecover(t *testing.T) {
	dir := t.TempDir()
	gate := newTestGate(0)
	hist := historyOf(dir)
	r := openGateRigWith(t, dir, gate, hist)
	r.sendAhead(t, 1, aheadGroups)
	gate.set(ms(30))
	waitGate(t, "groups applied through the limit", func() bool { return r.sec.Stats().Group == 30 })
	pos, err := r.sec.FenceToRecover()
	if err != nil {
		t.Fatal(err)
	}
	if pos.Group != 30 {
		t.Fatalf("fenced at group %d, want 30, the limit", pos.Group)
	}
	r.close(t)

	sec, v := openStopped(t, dir, hist)
	defer v.Close()
	defer sec.Close()
	if got := blocksHeld(t, sec, aheadGroups); !slices.Equal(got, want(aheadGroups, ms(30))) {
		t.Fatalf("fenced: the volume holds %v", got)
	}
	st, err := sec.RecoverTo(ms(17))
	if err != nil {
		t.Fatal(err)
	}
	if st.Group != 17 {
		t.Fatalf("recovered to group %d, want 17", st.Group)
	}
	if got := blocksHeld(t, sec, aheadGroups); !slices.Equal(got, want(aheadGroups, ms(17))) {
		t.Fatalf("recovered to 17ms: the volume holds %v, want %v", got, want(aheadGroups, ms(17)))
	}
}

// A held secondary whose journal's file system is down to the room the
// journal keeps besides (JournalReserve) stops acknowledging: its primary
// paces its writes, as it does for a secondary that is not coupled. It is
// not stopped, and goes on once there is room again.
func TestGateJournalFullPaces(t *testing.T) {
	dir := t.TempDir()
	gate := newTestGate(0)
	var free atomic.Uint64
	free.Store(1 << 40)
	applied := &appliedLog{}
	r := openGateRigConfig(t, dir, gate, func(c *Config) {
		applied.config(c)
		c.JournalFree = func() (uint64, error) { return free.Load(), nil }
	})
	defer func() { r.close(t) }()
	r.sendAhead(t, 1, 10)
	free.Store(uint64(r.sec.JournalReserve()))
	for seq := uint64(11); seq <= 20; seq++ {
		r.send(t, seq)
	}
	// One group more may be journaled on a reading of the free space
	// taken before it fell; the next waits for room, which status says.
	// A loaded machine may take longer than any fixed time to get there.
	waitGate(t, "status to say the journal is full", func() bool {
		st := r.sec.Stats()
		return st.Stopped != "" || !st.JournalFullSince.IsZero()
	})
	// Time to journal and acknowledge what it must not.
	time.Sleep(200 * time.Millisecond)
	st := r.sec.Stats()
	if st.Stopped != "" {
		t.Fatalf("the secondary stopped: %s", st.Stopped)
	}
	if st.JournalFullSince.IsZero() {
		t.Error("status does not say the journal is full")
	}
	if st.JournaledGroup > 11 || r.acked.Load() > 11 {
		t.Fatalf("the journal full, groups through %d journaled and %d acknowledged", st.JournaledGroup, r.acked.Load())
	}
	free.Store(1 << 40)
	waitGate(t, "every group acknowledged once there is room", func() bool { return r.acked.Load() >= 20 })
	if st := r.sec.Stats(); !st.JournalFullSince.IsZero() {
		t.Errorf("status says the journal is full since %v, with room again", st.JournalFullSince)
	}
	gate.set(ms(20))
	waitGate(t, "every group applied", func() bool { return r.sec.Stats().Group == 20 })
	applied.check(t, 1, 20)
}

// The applier takes the last group journaled ahead and waits for the
// limit; meanwhile the next group goes to its queue with its data, and
// the one after it ahead again. Once the limit passes both, the groups are
// applied in order, each once: the one ahead is not taken with the first
// past the one in the queue.
func TestGateQueuedGroupBetweenGroupsAheadAppliedInOrder(t *testing.T) {
	dir := t.TempDir()
	gate := newTestGate(0)
	applied := &appliedLog{}
	r := openGateRigConfig(t, dir, gate, applied.config)
	defer func() { r.close(t) }()
	// Group 1 with the applier, 2 in its queue, 3 ahead.
	r.sendAhead(t, 1, 3)
	gate.set(ms(2))
	waitGate(t, "groups 1 and 2 applied and group 3 taken from ahead", func() bool {
		r.sec.posMu.Lock()
		defer r.sec.posMu.Unlock()
		return r.sec.durable.Group == 2 && len(r.sec.gated.ahead) == 0
	})
	// Group 4 to the queue, 5 ahead of it.
	r.sendAhead(t, 4, 5)
	gate.set(ms(5))
	waitGate(t, "five groups applied", func() bool {
		applied.mu.Lock()
		defer applied.mu.Unlock()
		return len(applied.groups) >= 5
	})
	applied.check(t, 1, 5)
	r.waitApplied(t, 5)
}
