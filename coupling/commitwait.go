package coupling

import (
	"runtime"
	"time"
)

// CommitWait orders dependent writes across hosts, as Spanner's commit
// wait does. Within one host the primary's common timer stamps a write
// issued after another was acknowledged later than that one; across hosts
// the sessions' timers are different clocks, synchronized (NTP, PTP) to
// within Uncertainty of each other. Holding each acknowledgement until this
// host's clock reads past the write's stamp by Uncertainty makes every
// other host's clock read past it too before the client learns of the
// write: a write it issues afterwards, anywhere in the group, is stamped
// later. A nil CommitWait, or one of Uncertainty 0 (the sessions share one
// host's clock), waits for nothing.
type CommitWait struct {
	Uncertainty time.Duration
	// Last returns a time at or after the stamp of every write completed
	// so far: the common timer's last stamp.
	Last func() int64
	// Now is the wall clock (default time.Now).
	Now func() int64
}

// Wait returns once the clock reads past Last() plus Uncertainty, as of
// the call.
func (c *CommitWait) Wait() {
	if c == nil || c.Uncertainty <= 0 {
		return
	}
	now := c.Now
	if now == nil {
		now = func() int64 { return time.Now().UnixNano() }
	}
	until := c.Last() + int64(c.Uncertainty)
	for {
		d := time.Duration(until - now())
		switch {
		case d < 0:
			return
		case d > spinBelow:
			time.Sleep(d - spinBelow)
		default:
			// A sleep this short wakes a millisecond late on a busy
			// machine, which made a 0.1 ms bound cost as much as 1 ms.
			runtime.Gosched()
		}
	}
}

// spinBelow is the wait left to yield through rather than sleep.
const spinBelow = 300 * time.Microsecond
