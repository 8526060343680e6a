// Package ratelimit paces what the primary sends: the initial copies and
// resyncs of step (b) of the method (copy_rate_limit), and every frame of
// step (e) on the link (link_rate_limit), so that replication takes no
// more of a shared or paid-for link than the operator allows.
//
// A Limiter is a token bucket in bytes per second whose rate may change
// while it runs. A request larger than the bucket waits for its tokens in
// pieces, so a frame of any size passes at the rate; a wait ends at once
// when its context ends, and starts over at the new rate when the rate
// changes, so lifting a limit frees every waiter at once.
package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is a token bucket in bytes per second. The zero value and a nil
// *Limiter are unlimited.
type Limiter struct {
	mu      sync.Mutex
	bps     int64
	lim     *rate.Limiter
	changed chan struct{} // closed and replaced when the rate changes
}

// New returns a limiter of bps bytes per second; 0 is unlimited.
func New(bps int64) *Limiter {
	l := &Limiter{}
	l.SetRate(bps)
	return l
}

// burstFor is the bucket of a rate: a tenth of a second of it, so the rate
// holds over short windows, and at least 64 KiB so that small rates do not
// cost a wait per small frame.
func burstFor(bps int64) int {
	return int(min(max(bps/10, 64<<10), 16<<20))
}

// SetRate changes the rate to bps bytes per second (0: unlimited).
// Waiters start over at the new rate.
func (l *Limiter) SetRate(bps int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	bps = max(bps, 0)
	if l.changed != nil && bps == l.bps {
		return
	}
	l.bps = bps
	if bps > 0 {
		// A full bucket at first: a session starts sending at once.
		l.lim = rate.NewLimiter(rate.Limit(bps), burstFor(bps))
	} else {
		l.lim = nil
	}
	if l.changed != nil {
		close(l.changed)
	}
	l.changed = make(chan struct{})
}

// Rate returns the current rate in bytes per second; 0 is unlimited.
func (l *Limiter) Rate() int64 {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bps
}

func (l *Limiter) current() (*rate.Limiter, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.lim, l.changed
}

// Wait blocks until n bytes may pass at the current rate, or ctx ends (its
// error is then returned). It takes the bytes a bucket at a time, so n may
// exceed the bucket.
func (l *Limiter) Wait(ctx context.Context, n int64) error {
	if l == nil {
		return nil
	}
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		lim, changed := l.current()
		if lim == nil {
			return nil
		}
		k := min(n, int64(lim.Burst()))
		r := lim.ReserveN(time.Now(), int(k))
		if !r.OK() {
			// Cannot happen for k within the bucket; never spin on it.
			return fmt.Errorf("ratelimit: %d bytes exceed the bucket of %d", k, lim.Burst())
		}
		if d := r.Delay(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				r.Cancel()
				return ctx.Err()
			case <-changed:
				// Another rate: these tokens are taken at the new one.
				t.Stop()
				continue
			}
		}
		n -= k
	}
	return nil
}
