package site

import (
	"context"
	"strings"
	"testing"
	"time"

	"duplex/coupling"
)

// An idle primary's secondary journals an empty group every checkpoint, and
// the primary asks the promotion for the last group it acknowledged: a
// coupled switchover held short of it by the master time is refused, and
// the refusal names that group for what it is. It called it the group
// that "holds the primary's last acknowledged write" although no write was
// in it.
func TestCoupledSwitchoverRefusalSaysWhatTheAwaitedGroupIs(t *testing.T) {
	defer func(d time.Duration) { coupledApplyWait = d }(coupledApplyWait)
	coupledApplyWait = time.Second
	g := startCoupledSwitchover(t, coupledSwitchoverOpts{other: time.Now().Add(time.Hour).UnixNano()})
	copied := g.ap.Mover().Stats().Acked.Group
	other := time.Now().UnixNano()
	g.store.Set("other", coupling.Report{Time: other, At: other})
	waitFor(t, time.Minute, "an empty group journaled at idle past the other member's time", func() bool {
		a := g.ap.Mover().Stats().Acked
		return a.Group > copied && a.Time > other
	})
	_, err := g.ap.Switchover(context.Background(), time.Minute)
	if err == nil {
		t.Fatal("the switchover went through with the master time held short of the primary's last group")
	}
	wantWords(t, "the refusal", err.Error(), "the last group the primary acknowledged", "member other's time")
	if strings.Contains(err.Error(), "which holds the primary's last acknowledged write") {
		t.Errorf("the refusal calls a group journaled at idle the primary's last acknowledged write: %v", err)
	}
}
