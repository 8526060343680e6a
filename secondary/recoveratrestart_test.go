package secondary

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"duplex/recordset"
)

// twoGroupsApplied opens a secondary in dir keeping hist and has it apply
// group 1, a first copy writing 1s to block 2, and group 2, a write of 2s
// to block blk.
func twoGroupsApplied(t *testing.T, dir string, hist HistoryConfig, blk uint64) *gateRig {
	t.Helper()
	r := openGateRigWith(t, dir, nil, hist)
	r.sendSet(t, 1, wholeCopy(2, 1))
	r.sendSet(t, 2, []recordset.Update{blockWrite(blk, 2)})
	r.waitApplied(t, 2)
	return r
}

// A secondary taken back in time by recover --at reports, after a restart,
// what RecoverTo left: the pair state of the group it reached, and no
// resync of a group it undid. The journal still holds the groups after the
// one reached (RecoverTo releases none of them), and replay steps the pair
// states through them, the resync they open and the suspension they
// record included, though the volumes hold none of them: the restarted
// secondary calls vol1 suspended and held for a resync, with a journaled
// group and held groups that the recovery took away, so a later duplex
// recover or status at it reports a resync holding groups that does not
// exist.
func TestRecoverToStateSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	hist := historyOf(dir)
	r := openGateRigWith(t, dir, nil, hist)
	// Group 1 holds vol1's first copy, whole: the volume is consistent.
	r.sendSet(t, 1, wholeCopy(2, 1))
	r.sendSet(t, 2, []recordset.Update{blockWrite(4, 2)})
	// Group 3 suspends vol1 after a write; group 4 resumes it, its resync
	// held (not applied) until a copy end that never comes.
	r.sendSet(t, 3, []recordset.Update{blockWrite(6, 3), recordset.Marker{State: recordset.StateSuspended}.Update("vol1")})
	r.sendSet(t, 4, []recordset.Update{recordset.Marker{State: recordset.StateResync, Bytes: 4096}.Update("vol1"), blockWrite(8, 4)})
	waitGate(t, "groups 1 to 4 journaled, 3 applied", func() bool {
		st := r.sec.Stats()
		return st.JournaledGroup >= 4 && st.Group == 3
	})
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	r.close(t)

	sec, v := openStopped(t, dir, hist)
	st, err := sec.RecoverTo(int64(2 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if st.Group != 2 {
		t.Fatalf("recovered to group %d, want 2", st.Group)
	}
	stats, views := sec.Snapshot([]string{"vol1"})
	t.Logf("right after RecoverTo: group %d, journaled %d, held %d, resyncing %v, vol1 %+v",
		stats.Group, stats.JournaledGroup, stats.HeldGroups, stats.Resyncing, views[0])
	if stats.HeldGroups != 0 {
		t.Errorf("right after RecoverTo the secondary reports %d held groups (%d bytes) of a resync it undid", stats.HeldGroups, stats.HeldBytes)
	}
	if err := sec.Close(); err != nil {
		t.Fatal(err)
	}
	v.Close()

	sec, v = openStopped(t, dir, hist)
	defer v.Close()
	defer sec.Close()
	got, gotViews := sec.Snapshot([]string{"vol1"})
	t.Logf("after a restart: group %d, journaled %d, held %d, resyncing %v, vol1 %+v",
		got.Group, got.JournaledGroup, got.HeldGroups, got.Resyncing, gotViews[0])
	if got.Group != 2 {
		t.Fatalf("after a restart the applied group is %d, want 2", got.Group)
	}
	var bad []string
	if gotViews[0].State != StateDuplex || gotViews[0].Held {
		bad = append(bad, "vol1 reported "+gotViews[0].State+" (held "+map[bool]string{true: "yes", false: "no"}[gotViews[0].Held]+"), the volumes hold group 2, where it was duplex")
	}
	if got.HeldGroups != 0 || len(got.Resyncing) != 0 {
		bad = append(bad, fmt.Sprintf("a resync of %v holding %d groups the recovery undid", got.Resyncing, got.HeldGroups))
	}
	if got.JournaledGroup > 2 {
		bad = append(bad, fmt.Sprintf("journaled group %d, past the one recovered to", got.JournaledGroup))
	}
	if len(bad) > 0 {
		t.Fatalf("after recover --at and a restart the secondary reports what the volumes do not hold: %v", bad)
	}
}

// duplex recover leaves the secondary fenced and its volumes usable, and
// an operator who then uses them (mounts the file system, which writes
// to it) and finds the data bad goes back in time with recover --at,
// which is what it is for. RecoverTo then writes back the before images
// of the groups after the one it reaches, and nothing else: the blocks
// written since the fence keep the operator's bytes, so the volumes hold
// group 1 in some blocks and writes made after group 2 in others, a state
// the primary never had, reported as "recovered to group 1, consistent as
// of" its time. The history never saw those writes: recover --at must
// refuse volumes that may have been written since the fence (or say what
// it cannot undo), not report them consistent.
func TestRecoverToAfterTheVolumesWereUsed(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	hist := historyOf(dir)
	r := twoGroupsApplied(t, dir, hist, 4)
	if _, err := r.sec.Fence(); err != nil {
		t.Fatal(err)
	}
	r.close(t)

	// The volumes in use after recover: a write to block 100.
	f, err := os.OpenFile(filepath.Join(dir, "vol1.img"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0x77}, 4096), 100*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()

	sec, v := openStopped(t, dir, hist)
	defer v.Close()
	defer sec.Close()
	st, err := sec.RecoverTo(int64(time.Millisecond))
	if err != nil {
		if !errors.Is(err, ErrHandedOver) {
			t.Fatalf("refused, but not as volumes handed over: %v", err)
		}
		t.Logf("refused: %v", err)
		return
	}
	b := make([]byte, 4096)
	if err := sec.ReadAt("vol1", b, 100*4096); err != nil {
		t.Fatal(err)
	}
	if b[0] != 0xEE {
		t.Fatalf("recovered to group %d, consistent as of %d, but block 100 holds 0x%02x, written after group 2 (it held 0xEE at group %d)",
			st.Group, st.Time, b[0], st.Group)
	}
}

// A secondary run once without history (the setting left out for a while,
// then put back) applies groups whose undo nobody keeps, while the history
// directory still holds the undo of the groups before them, within the
// window. Put back, the history offers those older groups as points: the
// window in status starts at them, and recover --at to one writes back the
// before images of the groups the log holds and nothing of those applied
// without it, so the volumes hold the target group's bytes in some blocks
// and later groups' in others, reported as the target group.
func TestRecoverToAcrossARunWithoutHistory(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	hist := historyOf(dir)
	r := twoGroupsApplied(t, dir, hist, 4)
	r.close(t)

	// A run without history: group 3 rewrites block 2.
	r = openGateRigWith(t, dir, nil, HistoryConfig{})
	r.sendSet(t, 3, []recordset.Update{blockWrite(2, 3)})
	r.waitApplied(t, 3)
	r.close(t)

	// History again; then the secondary is fenced and recovered to group 1.
	r = openGateRigWith(t, dir, nil, hist)
	r.sendSet(t, 4, []recordset.Update{blockWrite(6, 4)})
	r.waitApplied(t, 4)
	oldest, newest, _ := r.sec.Window()
	t.Logf("window: group %d to group %d", oldest.Group, newest.Group)
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	r.close(t)

	sec, v := openStopped(t, dir, hist)
	defer v.Close()
	defer sec.Close()
	st, err := sec.RecoverTo(int64(time.Millisecond))
	if err != nil {
		t.Logf("refused: %v", err)
		return
	}
	got := blockBytes(t, func(p []byte, off int64) error { return sec.ReadAt("vol1", p, off) }, 3)
	// blocks 2..7: group 1 holds block 2 = 1, the rest 0xEE.
	if want := []byte{1, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE}; !bytes.Equal(got, want) {
		t.Fatalf("recovered to group %d, but blocks 2..7 hold %v, want group 1's %v: block 2 keeps group 3's write, applied while no history was kept",
			st.Group, got, want)
	}
}

// sendSetAt is sendSet with the record set's times base later.
func (r *gateRig) sendSetAt(t *testing.T, base int64, seq uint64, ups []recordset.Update) {
	t.Helper()
	ts := base + int64(seq)*int64(time.Millisecond)
	rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: seq, Group: seq, ReadTime: ts, Horizon: ts}
	for i, u := range ups {
		u.Timestamp = ts - int64(len(ups)) + int64(i)
		u.Seq = 10*seq + uint64(i)
		rs.Updates = append(rs.Updates, u)
	}
	r.sendRecordSet(t, rs)
}

// A secondary re-created as its way forward says (its journal directory,
// state.json, identity.json and volume images removed: a fence or diverged
// generations) keeps its history directory, which nothing removes or
// checks against the new state: the new incarnation numbers its groups
// from 1 again, finds the old incarnation's undo of groups 1 and 2 held
// (Log.Has) and captures nothing for its own, and the old groups stay
// points of the window. recover --at to the new group 1 reaches an old
// group instead, writes back no undo of the new group 2 (never captured),
// and reports the volumes, which hold new group 2's write, as of the old
// group's time.
func TestRecoverToAfterTheSecondaryWasRecreated(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	hist := historyOf(dir)
	r := twoGroupsApplied(t, dir, hist, 6)
	r.close(t)

	// Re-created as the way forward says.
	for _, p := range []string{"journal", "state.json", "identity.json", "vol1.img"} {
		if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	fillVolume(t, dir)

	// The new incarnation, an hour later.
	base := int64(time.Hour)
	r = openGateRigWith(t, dir, nil, hist)
	r.sendSetAt(t, base, 1, wholeCopy(2, 0x11))
	r.sendSetAt(t, base, 2, []recordset.Update{blockWrite(4, 0x12)})
	r.sendSetAt(t, base, 3, []recordset.Update{blockWrite(6, 0x13)})
	r.waitApplied(t, 3)
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	r.close(t)

	sec, v := openStopped(t, dir, hist)
	defer v.Close()
	defer sec.Close()
	at := base + int64(time.Millisecond) // new group 1
	st, err := sec.RecoverTo(at)
	if err != nil {
		t.Logf("refused: %v", err)
		return
	}
	got := blockBytes(t, func(p []byte, off int64) error { return sec.ReadAt("vol1", p, off) }, 3)
	// blocks 2..7 at new group 1: block 2 = 0x11, the rest 0xEE.
	if want := []byte{0x11, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE}; st.Group != 1 || st.Time != at || !bytes.Equal(got, want) {
		t.Fatalf("recover to new group 1 (time %d): reached group %d as of %d, blocks 2..7 hold % x, want % x",
			at, st.Group, st.Time, got, want)
	}
}
