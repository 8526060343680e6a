package e2e

import (
	"testing"
	"time"

	"duplex/control"
)

// A pair the restarted primary suspended (its activity log's regions did not
// fit the sidefile) and resumed by itself is seen non-duplex after the
// restart: on the wall clock before the consistency time the secondary
// reports, a stamp from before the restart, when the primary's clock runs
// ahead of the wall clock (a clock step of +1.66s), but after the primary
// gave it. Its copy is not in the group at that time: the secondary may
// apply the resync that the restart found unfinished, of another volume,
// before this one's resync begins, so that this copy stays as of its
// suspension while the other moves on (seed 1796321467380203983, step 90).
func TestPairWatchGroupIsOnThePrimarysClock(t *testing.T) {
	vols := []string{"v001", "v002", "v003", "v004"}
	w := newPairWatch("", vols)
	status := func(states ...string) control.Status {
		var st control.Status
		for i, s := range states {
			st.Volumes = append(st.Volumes, control.VolumeStatus{Name: vols[i], State: s})
		}
		return st
	}
	offset := 1660 * time.Millisecond
	start := time.Now().Add(-time.Minute)
	w.setClock(stampClock{offset: offset, mark: start.Add(fuzzTimerLease)})
	w.observe(status("duplex", "duplex", "duplex", "duplex"), start.Add(time.Second))

	// The primary is killed at kill; the secondary's last group from it
	// is stamped on its clock, 1.66s ahead of the wall clock.
	kill := start.Add(30 * time.Second)
	ct := kill.Add(offset)
	// The restart (300ms later) takes its timer's mark a lease ahead.
	restart := kill.Add(300 * time.Millisecond)
	w.setClock(stampClock{offset: offset, mark: restart.Add(offset).Add(fuzzTimerLease)})
	w.observe(status("suspended", "suspended", "pending", "suspended"), restart.Add(100*time.Millisecond))
	w.observe(status("pending", "pending", "pending", "pending"), restart.Add(400*time.Millisecond))
	// Duplex again well before ct on the wall clock.
	w.observe(status("duplex", "duplex", "duplex", "duplex"), restart.Add(800*time.Millisecond))

	if g := w.group(ct, nil, nil); len(g) != 0 {
		t.Errorf("volumes seen non-duplex after the primary stamped %s counted in its group: %v", ct.Format(time.RFC3339Nano), g)
	}
	// A consistency time stamped after every stamp the primary may have
	// given while they were seen non-duplex has them all.
	if g := w.group(restart.Add(offset).Add(fuzzTimerLease).Add(time.Millisecond), nil, nil); len(g) != len(vols) {
		t.Errorf("volumes duplex since before the primary stamped the consistency time left out of its group: %v", g)
	}
}
