package pair

import (
	"context"
	"slices"
	"testing"

	"duplex/apply"
	"duplex/consistency"
	"duplex/recordset"
	"duplex/secondary"
	"duplex/subsystem"
	"duplex/timer"
)

// TestResumeKilledBeforeItsSaveLeavesNoHoldOpen: Resume captures the
// resync marker, then saves the pending state (persist). The marker ships
// within an interval, and the save fsyncs the bitmap and the pair state
// after it, so the secondary may journal the marker before a kill -9 that comes ahead of the save. The restarted
// primary has the pair suspended, as its state on disk says, and announces
// that again (reannounce); the secondary keeps a resync's hold through a
// suspension (a resync suspended part-way), so from then on it applies no
// group of any volume: its consistency time freezes for the whole session
// while the primary runs no resync that could end the hold (the pair is
// suspended by hand, so the session never resumes it), until the journal
// runs short and the secondary gives the hold up, leaving the volume's
// copy inconsistent without anybody accepting that. Checked with the
// secondary's own rule (secondary.RecoversTo) over the stream both runs
// captured: once the restarted primary has announced its pair states, no
// resync may be left open that no pair of the primary is running.
func TestResumeKilledBeforeItsSaveLeavesNoHoldOpen(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	state := savePairs(t, dir, true,
		&Pair{Volume: "a", Subsystem: "s1", State: Suspended, Size: size, Since: 1, Consistent: 1},
		&Pair{Volume: "b", Subsystem: "s1", State: Duplex, Size: size})
	open := restartable(t, dir, state, size, timer.New())
	var stream []recordset.Update
	drain := func(ss *subsystem.Subsystem) {
		ups, _, _ := ss.Drain()
		stream = append(stream, ups...)
	}

	mg, ss := open()
	drain(ss)
	ctx := context.Background()
	if err := ss.Write(ctx, "a", make([]byte, 4096), 0); err != nil { // in a's bitmap
		t.Fatal(err)
	}
	// Resume up to its save: the marker captured, the pending state not
	// yet on disk.
	if err := mg.resume("a"); err != nil {
		t.Fatal(err)
	}
	drain(ss) // shipped and journaled at the secondary
	// kill -9 before the save: the state on disk still says suspended.
	mg2, ss2 := open()
	drain(ss2)
	if err := ss2.Write(ctx, "b", make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	drain(ss2)

	var groups []*consistency.Group
	for i, u := range stream {
		groups = append(groups, &consistency.Group{Number: uint64(i + 1), Time: u.Timestamp, Updates: []recordset.Update{u}})
	}
	base := apply.State{Volumes: map[string]apply.VolumeState{
		"a": {State: secondary.StateSuspended, Since: 1}, "b": {State: secondary.StateDuplex}}}
	g, _ := secondary.RecoversTo(base, groups)
	running := slices.ContainsFunc(mg2.Pairs(), func(p Pair) bool { return p.State == Pending })
	if last := uint64(len(groups)); g < last && !running {
		t.Fatalf("after the restart the secondary recovers only to group %d of %d: a resync announced before the kill holds it, "+
			"and the restarted primary runs none (pairs %+v), so nothing ever ends that hold", g, last, mg2.Pairs())
	}
}
