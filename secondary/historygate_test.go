package secondary

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"duplex/volume"
)

// fillVolume writes 0xEE over the rig's volume before it is opened, so
// that every before image is data, not zeros.
func fillVolume(t *testing.T, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "vol1.img"), bytes.Repeat([]byte{0xEE}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
}

// blockBytes returns the first byte of blocks 2..2*n+1.
func blockBytes(t *testing.T, read func(p []byte, off int64) error, n uint64) []byte {
	t.Helper()
	var out []byte
	b := make([]byte, 4096)
	for blk := uint64(2); blk <= 2*n+1; blk++ {
		if err := read(b, int64(blk*4096)); err != nil {
			t.Fatal(err)
		}
		out = append(out, b[0])
	}
	return out
}

func historyOf(dir string) HistoryConfig {
	return HistoryConfig{Dir: filepath.Join(dir, "history"), Window: time.Hour, MaxBytes: 64 << 20}
}

// twoGroupsHeld opens a secondary keeping history in a new directory,
// held by a Gate at 0 with groups 1 and 2 journaled.
func twoGroupsHeld(t *testing.T) (dir string, gate *testGate, hist HistoryConfig, r *gateRig) {
	t.Helper()
	dir = t.TempDir()
	fillVolume(t, dir)
	gate = newTestGate(0)
	hist = historyOf(dir)
	r = openGateRigWith(t, dir, gate, hist)
	r.send(t, 1)
	r.send(t, 2)
	waitGate(t, "groups 1 and 2 journaled", func() bool { return r.sec.Stats().JournaledGroup >= 2 })
	return dir, gate, hist, r
}

// The undo of a group applied in parts through the Gate's limit is
// captured once, whole, before its first part: later parts, a restart's
// replay through the limit and the group's completion capture nothing more,
// and undoing the group restores every block it wrote, those of its later
// parts too.
func TestHistoryOfAGroupAppliedThroughTheGate(t *testing.T) {
	dir, gate, hist, r := twoGroupsHeld(t)

	// Group 1 and the first write of group 2.
	limit := int64(2*time.Millisecond) - 2
	gate.set(limit)
	waitGate(t, "group 2 through the first limit", func() bool { st := r.sec.Stats(); return st.Group == 1 && st.Time == limit })
	if !r.sec.hist.Has(2) {
		t.Fatal("group 2's first write is applied but its undo is not held")
	}
	size := r.sec.hist.Bytes()

	// Both writes of group 2, its time (2ms) still after the limit.
	limit++
	gate.set(limit)
	waitGate(t, "group 2 through the second limit", func() bool { st := r.sec.Stats(); return st.Group == 1 && st.Time == limit })
	if got := r.sec.hist.Bytes(); got != size {
		t.Fatalf("a second part of group 2 captured again: history %d bytes, was %d", got, size)
	}
	r.close(t)

	// The restart replays group 2 through the limit: nothing captured.
	r = openGateRigWith(t, dir, gate, hist)
	if got := r.sec.hist.Bytes(); got != size {
		t.Fatalf("the restart's replay through the limit captured group 2 again: history %d bytes, was %d", got, size)
	}
	r.send(t, 3)
	waitGate(t, "group 3 journaled", func() bool { return r.sec.Stats().JournaledGroup >= 3 })
	gate.set(int64(3 * time.Millisecond))
	waitGate(t, "every group applied", func() bool { return r.sec.Stats().Group == 3 })
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	r.close(t)

	// Back to group 1 at a stopped secondary: group 2's blocks, both
	// written in parts, hold their bytes from before it again.
	sec, v := openStopped(t, dir, hist)
	if got := blockBytes(t, func(p []byte, off int64) error { return sec.ReadAt("vol1", p, off) }, 3); !bytes.Equal(got, []byte{1, 1, 2, 2, 3, 3}) {
		t.Fatalf("before recovering: blocks %v", got)
	}
	st, err := sec.RecoverTo(int64(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if st.Group != 1 {
		t.Fatalf("recovered to group %d, want 1", st.Group)
	}
	if got := blockBytes(t, func(p []byte, off int64) error { return sec.ReadAt("vol1", p, off) }, 3); !bytes.Equal(got, []byte{1, 1, 0xEE, 0xEE, 0xEE, 0xEE}) {
		t.Fatalf("recovered to group 1: blocks %v, want group 2's and 3's as before them", got)
	}
	sec.Close()
	v.Close()
}

// A secondary fenced with part of the next group applied through the
// Gate's limit, recovered to a time, holds no byte of that part: the undo
// of the group is held, and RecoverTo writes it back rather than dropping
// it with the volumes still holding the part.
func TestRecoverToUndoesAPartAppliedThroughTheGate(t *testing.T) {
	dir, gate, hist, r := twoGroupsHeld(t)
	limit := int64(2*time.Millisecond) - 2
	gate.set(limit)
	waitGate(t, "group 2 through the limit", func() bool { st := r.sec.Stats(); return st.Group == 1 && st.Time == limit })
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	r.close(t)

	sec, v := openStopped(t, dir, hist)
	defer v.Close()
	defer sec.Close()
	read := func(p []byte, off int64) error { return sec.ReadAt("vol1", p, off) }
	if got := blockBytes(t, read, 2); !bytes.Equal(got, []byte{1, 1, 2, 0xEE}) {
		t.Fatalf("fenced at the limit: blocks %v", got)
	}
	st, err := sec.RecoverTo(int64(2 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if st.Group != 1 {
		t.Fatalf("recovered to group %d, want 1", st.Group)
	}
	if got := blockBytes(t, read, 2); !bytes.Equal(got, []byte{1, 1, 0xEE, 0xEE}) {
		t.Fatalf("recovered to group 1: blocks %v, want group 2's first write undone", got)
	}
}

// openStopped opens the rig's secondary as recover does: no Gate, no Run.
func openStopped(t *testing.T, dir string, hist HistoryConfig) (*Secondary, *volume.Volume) {
	t.Helper()
	return openStoppedFS(t, dir, hist, nil)
}

// A read view pinned before the Gate lets part of the next group through
// reads the volume as it was when it was pinned, through that part and
// through the rest of the group applied later.
func TestReadViewThroughTheGate(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	gate := newTestGate(0)
	r := openGateRigWith(t, dir, gate, HistoryConfig{})
	defer r.close(t)
	r.send(t, 1)
	r.send(t, 2)
	waitGate(t, "groups 1 and 2 journaled", func() bool { return r.sec.Stats().JournaledGroup >= 2 })
	gate.set(int64(time.Millisecond))
	r.waitApplied(t, 1)
	v, err := r.sec.Pin()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	read := func(p []byte, off int64) error { return v.ReadAt("vol1", p, off) }
	want := []byte{1, 1, 0xEE, 0xEE}

	limit := int64(2*time.Millisecond) - 2
	gate.set(limit)
	waitGate(t, "group 2 through the limit", func() bool { st := r.sec.Stats(); return st.Time == limit })
	if got := blockBytes(t, read, 2); !bytes.Equal(got, want) {
		t.Fatalf("after part of group 2: the view pinned at group 1 reads blocks %v, want %v", got, want)
	}
	gate.set(int64(2 * time.Millisecond))
	r.waitApplied(t, 2)
	if got := blockBytes(t, read, 2); !bytes.Equal(got, want) {
		t.Fatalf("after group 2: the view pinned at group 1 reads blocks %v, want %v", got, want)
	}
}

// The read views open together hold at most the secondary's budget for
// them: past it, the view holding the most (the oldest) is given up, and
// its reads fail with ErrViewGone, never wrong data; the others go on.
func TestReadViewsWithinTheirBudget(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	gate := newTestGate(0)
	r := openGateRigWith(t, dir, gate, HistoryConfig{})
	defer r.close(t)
	// Each group overwrites 8 KiB: two views over two groups hold 24 KiB.
	r.sec.rviews.budget = 20 << 10
	for seq := uint64(1); seq <= 3; seq++ {
		r.send(t, seq)
	}
	waitGate(t, "groups journaled", func() bool { return r.sec.Stats().JournaledGroup >= 3 })
	pinAt := func(g uint64) *ReadView {
		gate.set(int64(g) * int64(time.Millisecond))
		waitGate(t, "group applied", func() bool { return r.sec.Stats().Group == g })
		v, err := r.sec.Pin()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		return v
	}
	old, young := pinAt(1), pinAt(2)
	gate.set(int64(3 * time.Millisecond))
	r.waitApplied(t, 3)
	if err := old.ReadAt("vol1", make([]byte, 4096), 0); !errors.Is(err, ErrViewGone) {
		t.Fatalf("the oldest view, past the budget, reads: %v", err)
	}
	got := blockBytes(t, func(p []byte, off int64) error { return young.ReadAt("vol1", p, off) }, 3)
	if want := []byte{1, 1, 2, 2, 0xEE, 0xEE}; !bytes.Equal(got, want) {
		t.Fatalf("the view of group 2 reads blocks %v, want %v", got, want)
	}
}

// threeGroupsWithHistory is a secondary keeping history that applied
// groups 1 to 3 (r.send's), held by the gate it returns.
func threeGroupsWithHistory(t *testing.T) (*gateRig, *testGate) {
	t.Helper()
	dir := t.TempDir()
	fillVolume(t, dir)
	gate := newTestGate(0)
	r := openGateRigWith(t, dir, gate, historyOf(dir))
	for seq := uint64(1); seq <= 3; seq++ {
		r.send(t, seq)
	}
	waitGate(t, "groups journaled", func() bool { return r.sec.Stats().JournaledGroup >= 3 })
	gate.set(int64(3 * time.Millisecond))
	r.waitApplied(t, 3)
	return r, gate
}

// A read view of a past time reads the volumes as of the newest group at
// or before it, and goes on doing so while later groups are applied; a
// time before the history's oldest group is refused with the window, and
// a secondary without history refuses any.
func TestReadViewAtAPastTime(t *testing.T) {
	r, gate := threeGroupsWithHistory(t)
	defer r.close(t)
	at := func(ts time.Duration) *ReadView {
		v, err := r.sec.PinAt(int64(ts))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		return v
	}
	blocks := func(v *ReadView) []byte {
		return blockBytes(t, func(p []byte, off int64) error { return v.ReadAt("vol1", p, off) }, 4)
	}
	v1, v2 := at(time.Millisecond), at(2500*time.Microsecond)
	if v1.Group != 1 || v2.Group != 2 {
		t.Fatalf("views at 1ms and 2.5ms pinned groups %d and %d, want 1 and 2", v1.Group, v2.Group)
	}
	r.send(t, 4)
	gate.set(int64(4 * time.Millisecond))
	r.waitApplied(t, 4)
	if got, want := blocks(v1), []byte{1, 1, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE}; !bytes.Equal(got, want) {
		t.Fatalf("the view at 1ms reads blocks %v, want %v", got, want)
	}
	if got, want := blocks(v2), []byte{1, 1, 2, 2, 0xEE, 0xEE, 0xEE, 0xEE}; !bytes.Equal(got, want) {
		t.Fatalf("the view at 2.5ms reads blocks %v, want %v", got, want)
	}
	if got, want := blocks(at(time.Hour)), []byte{1, 1, 2, 2, 3, 3, 4, 4}; !bytes.Equal(got, want) {
		t.Fatalf("a view at a time after the newest group reads blocks %v, want %v", got, want)
	}
	if _, err := r.sec.PinAt(int64(time.Microsecond)); !errors.Is(err, ErrOutsideWindow) {
		t.Fatalf("a view before the window: %v", err)
	}
}

func TestReadViewAtAPastTimeWithoutHistory(t *testing.T) {
	dir := t.TempDir()
	r := openGateRigWith(t, dir, newTestGate(int64(time.Hour)), HistoryConfig{})
	defer r.close(t)
	if _, err := r.sec.PinAt(0); !errors.Is(err, ErrNoHistory) {
		t.Fatalf("a view of a past time without history: %v", err)
	}
}

// A view of a past time that would take the views past their budget is
// refused when it is opened, not given up at its first read.
func TestReadViewAtAPastTimePastTheBudget(t *testing.T) {
	r, _ := threeGroupsWithHistory(t)
	defer r.close(t)
	r.sec.rviews.budget = 12 << 10
	current, err := r.sec.Pin()
	if err != nil {
		t.Fatal(err)
	}
	defer current.Close()
	// Groups 2 and 3 overwrote 16 KiB since group 1.
	if v, err := r.sec.PinAt(int64(time.Millisecond)); !errors.Is(err, ErrViewGone) {
		t.Fatalf("a view past the budget: %v, %v", v, err)
	}
	if err := current.ReadAt("vol1", make([]byte, 4096), 0); err != nil {
		t.Fatalf("the view open before: %v", err)
	}
	if n := len(r.sec.rviews.views); n != 1 {
		t.Fatalf("%d views registered, want the one open", n)
	}
}
