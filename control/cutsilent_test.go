package control

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestACutCallWhoseSecondLookRunsOutSaysItsEffectIsUnknown: a call whose
// connection the site cut mid-call (reset, or closed with the call read
// whole), where the status asked once more is taken and never answered (a
// site started again that hangs) until the caller's deadline, still says
// that the connection was cut after the call was sent and, of a call that
// changes state, that whether it took effect is not known. Before: "drill:
// the control address ... did not answer in time: context deadline
// exceeded", as of a call never answered.
func TestACutCallWhoseSecondLookRunsOutSaysItsEffectIsUnknown(t *testing.T) {
	for _, reset := range []bool{true, false} {
		addr, posts := cutFirstCall(t, reset, answersNothing)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := Drill(ctx, Endpoint{Addr: addr}, "t", DrillRequest{})
		cancel()
		if err == nil || !strings.Contains(err.Error(), "after the call was sent") || !strings.Contains(err.Error(), "whether it took effect is not known") {
			t.Errorf("reset %v: %v; want the cut said, and that whether the drill took effect is not known", reset, err)
		}
		if n := posts.Load(); n != 1 {
			t.Errorf("reset %v: the drill was sent %d times, want once", reset, n)
		}
	}
}
