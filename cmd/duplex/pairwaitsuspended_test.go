package main

import (
	"strings"
	"testing"
	"time"

	"duplex/control"
)

// A pair suspended during `pair add|resume --wait` (by the session, to
// resume it by itself) is reported by the primary as copied whole: a
// suspended pair's copied_bytes is its size, the copy's progress gone (a
// resume copies the regions changed). That jump is no progress toward
// duplex, however well the link goes; nor does the wait's last word say
// the copy was whole. Before, the jump, with the secondary acknowledging
// heartbeats, was taken for progress, and the stretch --timeout bounds
// began again at the suspension; the error said "1.0 MiB of 1.0 MiB
// copied" of the pair. (A pair suspended for an operator to resume, as
// when its copy's read of the primary volume hung, ends the wait at once:
// TestPairWaitShowsAPairSuspendedByHandAsSuch.)
func TestPairWaitTakesNoSuspensionForProgress(t *testing.T) {
	pending := control.Status{Session: "s", Role: "primary", Link: "connected", ConsistencyTime: journaled(1),
		Volumes: []control.VolumeStatus{{Name: "vol1", State: "pending", SizeBytes: 1 << 20, CopiedBytes: 1 << 19}}}
	suspended := control.Status{Session: "s", Role: "primary", Link: "connected", ConsistencyTime: journaled(2),
		Volumes: []control.VolumeStatus{{Name: "vol1", State: "suspended", SizeBytes: 1 << 20, CopiedBytes: 1 << 20,
			Auto: true, Reason: "the secondary's journal is full"}}}
	vols := []string{"vol1"}
	if newWaitMark(suspended, vols).progressed(newWaitMark(pending, vols)) {
		t.Errorf("vol1 suspended meanwhile, its copied_bytes its size, is taken for progress toward duplex")
	}
	const patience = 2 * time.Second
	err, out, took := pairWaitAt(t, patience, func(n int32) control.Status {
		st := suspended
		st.ConsistencyTime = journaled(n)
		return st
	})
	wantEndedWithin(t, "waiting for vol1 suspended meanwhile", patience, err, out, took, "vol1 suspended", "journal is full")
	if err != nil && strings.Contains(err.Error(), "1.0 MiB of 1.0 MiB copied") {
		t.Errorf("the wait's end says the suspended pair was copied whole: %v", err)
	}
}
