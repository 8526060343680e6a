// Package timer is the primary site's common system timer of the method: the
// single clock every subsystem stamps its writes with.
//
// The guarantee the rest of Duplex rests on is that a write issued after another
// write was acknowledged carries a strictly later timestamp, whichever volume or
// subsystem either went to. Wall-clock time alone does not give that (two stamps
// can be equal, and the clock can step back), so each stamp is
// max(now, last+1) in nanoseconds since the Unix epoch.
package timer

import (
	"sync/atomic"
	"time"
)

// Timer hands out strictly increasing timestamps. The zero value is ready to
// use. It is safe for concurrent use.
type Timer struct {
	last atomic.Int64
	// now is replaceable so tests can drive a clock that stalls or steps back.
	now func() int64
	// lease, when set, keeps every stamp below a mark persisted ahead of use
	// (see OpenPersistent).
	lease *lease
}

// New returns a Timer that reads the wall clock.
func New() *Timer { return &Timer{} }

// NewWithClock returns a Timer that reads now instead of the wall clock.
// A nil now means the wall clock.
func NewWithClock(now func() int64) *Timer { return &Timer{now: now} }

func (t *Timer) wall() int64 {
	if t.now != nil {
		return t.now()
	}
	return time.Now().UnixNano()
}

// Now returns a timestamp greater than every one returned before.
func (t *Timer) Now() int64 {
	for {
		last := t.last.Load()
		wall := t.wall()
		ts := wall
		if ts <= last {
			ts = last + 1
		}
		if t.last.CompareAndSwap(last, ts) {
			if t.lease != nil {
				t.lease.cover(t, ts, wall)
			}
			return ts
		}
	}
}

// AtLeast makes every later stamp greater than ts. A primary that restarts
// calls it with the secondary's consistency time, so that its new writes sort
// after everything the secondary already holds even if the wall clock went back.
func (t *Timer) AtLeast(ts int64) {
	for {
		last := t.last.Load()
		if last >= ts || t.last.CompareAndSwap(last, ts) {
			return
		}
	}
}

// Last returns the most recent timestamp handed out (0 if none).
func (t *Timer) Last() int64 { return t.last.Load() }
