package secondary

import (
	"strings"
	"testing"

	"duplex/apply"
	"duplex/transport"
)

// TestAKillBetweenTheForgettingAndTheWaitingGroupsApplied: the groups that
// name vol2, out of the config, wait; a primary links without vol2, and
// the secondary is killed -9 once the state file says vol2 forgotten,
// before the groups are applied (the state file written by the forgetting
// is the one on disk, the volumes untouched since the first kill). The
// next start applies them without vol2's updates: vol1 holds the writes
// of groups 3 and 4 (the dependent write of group 3 with vol2's, which is
// forgotten on purpose), reported consistent as of group 4, and a later
// primary without vol2 finds nothing waiting.
func TestAKillBetweenTheForgettingAndTheWaitingGroupsApplied(t *testing.T) {
	dir := killedWithGroupsUnapplied(t)
	r := &rig{t: t, dir: dir, sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"}}
	// Started once without vol2 (every group since the state file's
	// names vol2, and waits) and stopped: the state file the link found.
	r.open()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	st, err := apply.ReadState(r.config().StatePath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Group != 0 {
		t.Fatalf("the state file says group %d, want 0: the groups that name vol2 wait", st.Group)
	}
	// As forgetUnnamedLocked checkpoints it: vol2's pair dropped, forgotten
	// through the last group journaled, the applied group unchanged.
	delete(st.Volumes, "vol2")
	st.Forgotten = map[string]uint64{"vol2": 4}
	if err := apply.WriteState(r.config().StatePath, st); err != nil {
		t.Fatal(err)
	}
	r.open()
	t.Cleanup(r.close)
	holds(t, r, "vol1", 8192, 1)
	holds(t, r, "vol1", 12288, 4)
	if v := r.sec.Volume("vol1"); !v.Consistent || v.Time < 40_000 {
		t.Errorf("vol1 is reported %+v, want consistent as of group 4", v)
	}
	without := r.hello()
	without.Instance = 9
	if _, typ, body := r.dial(without); typ != transport.TypeWelcome {
		reason, _ := refusalReason(body)
		t.Fatalf("a primary without vol2: frame type %d (%q), want a welcome", typ, reason)
	}
	holds(t, r, "vol1", 8192, 1)
	if s := r.sec.Stats(); s.Group != 4 {
		t.Errorf("applied through group %d, want 4", s.Group)
	}
}

// TestAFenceRefusedWhileTheGroupsWaitSaysHowToPromote: the primary site
// lost while the groups that name vol2, out of the config, wait, no
// primary will ever link to apply them. The fence a promote (or recover)
// asks for is refused, and its refusal says the way that works without a
// primary: vol2 back in the config, the groups applied to every volume.
func TestAFenceRefusedWhileTheGroupsWaitSaysHowToPromote(t *testing.T) {
	dir := killedWithGroupsUnapplied(t)
	r := &rig{t: t, dir: dir, sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"}}
	r.open()
	t.Cleanup(r.close)
	_, err := r.sec.Fence()
	if err == nil {
		t.Fatal("fenced while the groups that name vol2 wait")
	}
	for _, w := range []string{`"vol2"`, "promote", "without a primary", "back in this secondary's config"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the fence refused saying %q: want %q in it", err, w)
		}
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.sizes = map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20}
	r.open()
	pos, err := r.sec.Fence()
	if err != nil {
		t.Fatalf("vol2 back in the config, the fence: %v", err)
	}
	if pos.Group != 4 {
		t.Errorf("fenced at group %d, want 4", pos.Group)
	}
	holds(t, r, "vol1", 8192, 1)
	holds(t, r, "vol1", 12288, 4)
	holds(t, r, "vol2", 8192, 2)
}
