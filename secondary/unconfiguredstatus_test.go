package secondary

import (
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/transport"
)

// TestStatusSaysWhyGroupsWaitForAPrimary: started without vol2, whose
// journaled groups it had not applied when it was killed, the secondary
// has them wait for a primary that links without vol2. Its status says
// so, naming the volume and what the operator does, and each volume says
// it is not consistent until then. Before, status gave no reason: the
// volumes read "not consistent: its copy is not complete".
func TestStatusSaysWhyGroupsWaitForAPrimary(t *testing.T) {
	dir := killedWithGroupsUnapplied(t)
	r := &rig{t: t, dir: dir, sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"}}
	r.open()
	t.Cleanup(r.close)
	st := r.sec.Stats()
	for _, w := range []string{`"vol2"`, "no longer has", "a primary that links without it", "put"} {
		if !strings.Contains(st.GroupsWait, w) {
			t.Errorf("while the groups wait, status says %q: want it to say %s", st.GroupsWait, w)
		}
	}
	if v := r.sec.Volume("vol1"); !v.WaitsForPrimary {
		t.Errorf("vol1 while the groups wait: %+v, want it waiting for a primary", v)
	}
	without := r.hello()
	without.Instance = 9
	if _, typ, _ := r.dial(without); typ != transport.TypeWelcome {
		t.Fatalf("a primary without vol2: frame type %d, want a welcome", typ)
	}
	if st := r.sec.Stats(); st.GroupsWait != "" {
		t.Errorf("the groups applied, status still says %q", st.GroupsWait)
	}
	if v := r.sec.Volume("vol1"); v.WaitsForPrimary || !v.Consistent {
		t.Errorf("vol1 once the groups are applied: %+v, want consistent, waiting for nothing", v)
	}
}

// TestStatusAnswersWhileTheWaitingGroupsAreApplied: the groups that waited
// for a primary without their volume are applied when one links, which
// for large groups takes as long as their writes and the volumes' flush.
// Status, and a fence's or another primary's hold, must not wait for
// that: the apply runs outside the secondary's main lock. Before, it ran
// under it, and status hung until the last write ended.
func TestStatusAnswersWhileTheWaitingGroupsAreApplied(t *testing.T) {
	dir := killedWithGroupsUnapplied(t)
	r := &rig{t: t, dir: dir, sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"}}
	r.open()
	t.Cleanup(r.close)
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	r.sec.targets["vol1"] = gatedTarget{Target: r.sec.targets["vol1"], gate: gate}
	without := r.hello()
	without.Instance = 9
	linked := make(chan byte, 1)
	go func() {
		_, typ, _ := r.dial(without)
		linked <- typ
	}()
	waitFor(t, "the waiting groups' apply to reach vol1's gate", func() bool {
		r.sec.disk.mu.Lock()
		defer r.sec.disk.mu.Unlock()
		return r.sec.disk.w[waitApply].what != ""
	})
	answered := make(chan Stats, 1)
	go func() { answered <- r.sec.Stats() }()
	select {
	case st := <-answered:
		if st.Connected {
			t.Errorf("status while the groups are applied says the primary is linked")
		}
		// What is true then: a primary linked, and they are applied.
		if !strings.Contains(st.GroupsWait, "applying 4 journaled groups (1 through 4)") || !strings.Contains(st.GroupsWait, `"vol2"`) ||
			strings.Contains(st.GroupsWait, "wait for a primary") {
			t.Errorf("status while the groups are applied says %q; want it to say they are applied, which and why", st.GroupsWait)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("status has not answered 2s into the apply of the groups that waited for a primary")
	}
	// Nor does vol1 say it waits for a primary: one linked.
	viewed := make(chan VolumeView, 1)
	go func() { viewed <- r.sec.Volume("vol1") }()
	select {
	case v := <-viewed:
		if v.WaitsForPrimary || !v.AppliesWaited || v.Consistent {
			t.Errorf("vol1 while the groups are applied: %+v, want it not consistent while they are applied, waiting for no primary", v)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("vol1's view has not answered 2s into the apply")
	}
	// Another primary meanwhile is refused, not linked over the apply.
	other := r.hello()
	other.Instance = 10
	answer := make(chan byte, 1)
	go func() {
		_, typ, _ := r.dial(other)
		answer <- typ
	}()
	select {
	case typ := <-answer:
		if typ != transport.TypeRefuse {
			t.Errorf("another primary during the apply: frame type %d, want a refusal", typ)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("another primary has had no answer 2s into the apply")
	}
	open()
	select {
	case typ := <-linked:
		if typ != transport.TypeWelcome {
			t.Fatalf("the primary without vol2: frame type %d, want a welcome", typ)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the primary without vol2 is not welcomed 10s after the apply could go on")
	}
	if st := r.sec.Stats(); st.GroupsWait != "" {
		t.Errorf("the groups applied, status still says %q", st.GroupsWait)
	}
	holds(t, r, "vol1", 8192, 1)
	holds(t, r, "vol1", 12288, 4)
}

// TestStatusSaysTheWaitingGroupsApplyFailed: the apply of the groups that
// waited, at a primary's link without their volume, fails part-way on a
// volume's write: status says so, with the error and what applies the
// rest, not that they wait for a primary to link; the next primary's
// link applies them, and then nothing waits.
func TestStatusSaysTheWaitingGroupsApplyFailed(t *testing.T) {
	dir := killedWithGroupsUnapplied(t)
	r := &rig{t: t, dir: dir, sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"}}
	r.open()
	t.Cleanup(r.close)
	working := r.sec.targets["vol1"]
	r.sec.targets["vol1"] = failingTarget{working}
	without := r.hello()
	without.Instance = 9
	if _, typ, _ := r.dial(without); typ != transport.TypeRefuse {
		t.Fatalf("a primary without vol2, vol1's writes failing: frame type %d, want a refusal", typ)
	}
	st := r.sec.Stats()
	for _, w := range []string{"failed part-way", "injected write failure", `"vol2"`, "next primary", "restart"} {
		if !strings.Contains(st.GroupsWait, w) {
			t.Errorf("after the apply failed, status says %q: want it to say %s", st.GroupsWait, w)
		}
	}
	if strings.HasPrefix(st.GroupsWait, "applying") {
		t.Errorf("after the apply failed, status says it applies them: %q", st.GroupsWait)
	}
	r.sec.targets["vol1"] = working
	without.Instance = 10
	if _, typ, _ := r.dial(without); typ != transport.TypeWelcome {
		t.Fatalf("the next primary without vol2: frame type %d, want a welcome", typ)
	}
	if st := r.sec.Stats(); st.GroupsWait != "" {
		t.Errorf("the groups applied, status still says %q", st.GroupsWait)
	}
	holds(t, r, "vol1", 12288, 4)
}
