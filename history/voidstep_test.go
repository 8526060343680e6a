package history

import (
	"math/rand"
	"testing"
)

// A Void at a step inside a group (recover --at a time within a group
// formed over many intervals) lowers the keep of a Trim holds stopped
// short to that group, as a Void at the group's end does: the volumes
// hold the group through the step, the state file names it, and the
// groups numbered after it are captured anew before they are applied,
// which a restart applying one again must find (Has). The Trim run again
// as the last hold goes keeps them; it may drop the group of the step,
// whole, never its steps before the point apart from their group's
// first part.
func TestARetrimAfterAVoidAtAStepKeepsTheGroupsCapturedSince(t *testing.T) {
	l, err := Open(t.TempDir(), Options{MaxBytes: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	v := &mem{make([]byte, 1<<20)}
	srcs := map[string]Source{"v": v}
	rng := rand.New(rand.NewSource(41))
	capture := func(first, last uint64) {
		t.Helper()
		for g := first; g <= last; g++ {
			rng.Read(v.b[:600<<10])
			if g == 6 {
				// Three steps of 200 KiB each, at 5400, 5700 and 6000.
				var steps []Step
				for k := uint64(0); k < 3; k++ {
					steps = append(steps, Step{Time: int64(5400 + 300*k), Ranges: []Range{{"v", k * 200 << 10, 200 << 10}}})
				}
				if err := l.CaptureSteps(Header{Group: g, Time: 6000}, steps, srcs); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := l.Capture(Header{Group: g, Time: int64(g) * 1000}, []Range{{"v", 0, 600 << 10}}, srcs); err != nil {
				t.Fatal(err)
			}
		}
	}
	capture(1, 12)
	p, ok := l.Oldest()
	if !ok {
		t.Fatal("no point")
	}
	release, err := l.Hold(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Trim(12); err != nil {
		t.Fatal(err)
	}
	mid := Point{Group: 6, Time: 5700}
	l.trimMu.Lock()
	release()
	if err := l.Void(mid); err != nil {
		l.trimMu.Unlock()
		t.Fatal(err)
	}
	if l.Beyond(mid) {
		l.trimMu.Unlock()
		t.Fatal("voided at group 6's second step: the Log holds undo after it")
	}
	capture(7, 12)
	l.trimMu.Unlock()
	l.retrims.Wait()
	for g := uint64(7); g <= 12; g++ {
		if !l.Has(g) {
			t.Fatalf("after a Void at a step of group 6 and groups 7-12 captured again, the Trim run again as the hold went dropped the undo of group %d (oldest %v)", g, oldestGroup(l))
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.entries[0]; e.part != 0 {
		t.Errorf("the Trim run again left group %d from its part %d: a group cut in two", e.group, e.part)
	}
	for _, e := range l.entries {
		if e.group == 6 && e.time > mid.Time {
			t.Errorf("group 6's step at %d, after the Void at %d, is held again", e.time, mid.Time)
		}
	}
}
