package mover

import (
	"testing"
	"time"

	"duplex/ratelimit"
)

// TestALinkLostWhileASendWaitsForItsRateIsSeenAtOnce: a secondary that
// goes away (its process killed) while the mover waits for the link's
// rate limit to send a large frame is seen gone when its end closes, not
// when the wait is over: at a low rate that wait is minutes or hours, and
// meanwhile the status says the link is up, a switchover is not refused
// for a link that is down, and the pairs do not suspend into bitmaps.
func TestALinkLostWhileASendWaitsForItsRateIsSeenAtOnce(t *testing.T) {
	const silence = 1 << 62
	// 48 MiB at 64 KiB/s: the frame's wait is 768s.
	r := startStalledAt(t, silence, silence, ratelimit.New(64<<10), false)
	defer r.stop(t)
	waitFor(t, "the send of the 48 MiB record set", func() bool { return r.sending.Load() >= stalledBytes })
	r.peer.Close()
	waitFor(t, "the link to count as lost once the secondary closed it", func() bool { return !r.m.Stats().Connected })
}

// TestASilentSecondaryIsGivenUpWhileASendWaitsForItsRate: a secondary
// that goes silent without closing the link (its host powered off, the
// network between the sites cut) leaves a record set it was sent
// unanswered; while the mover waits for the link's rate limit to send the
// next, a large frame at a low rate, the silence time must still give the
// link up, not the end of that wait (768s here) or of TCP's own timeouts.
func TestASilentSecondaryIsGivenUpWhileASendWaitsForItsRate(t *testing.T) {
	const never = 1 << 62
	// Silence outlasts writing the 48 MiB after the small set went out.
	r := startStalledAt(t, never, 5*time.Second, ratelimit.New(64<<10), true)
	defer r.stop(t)
	waitFor(t, "the send of the 48 MiB record set", func() bool { return r.sending.Load() >= stalledBytes })
	waitFor(t, "the link to count as lost once the secondary was silent for the silence time", func() bool { return !r.m.Stats().Connected })
}
