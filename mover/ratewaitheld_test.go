package mover

import (
	"testing"
	"time"

	"duplex/ratelimit"
)

// TestARateWaitIsNotCountedAsASendHeldByTheSecondary: a large frame waits
// for the link's rate limit before its first byte goes out; the
// secondary, answering, then takes nothing (its disk slow). HeldSend
// bounds how long the secondary holds the send, counted from when its
// bytes began to go, not from when the frame began its wait at the
// limiter: counted so, a wait of HeldSend at the limiter would leave the
// send the silence time alone.
func TestARateWaitIsNotCountedAsASendHeldByTheSecondary(t *testing.T) {
	const silence, held = time.Second, 6 * time.Second
	// 48 MiB at 8 MiB/s, a bucket of 0.8 MiB: 5.9s at the limiter.
	const wait = 5800 * time.Millisecond
	r := startStalledHeld(t, time.Hour, silence, ratelimit.New(8<<20), false, held)
	defer r.stop(t)
	r.answer(t, 100*time.Millisecond)
	waitFor(t, "the send of the 48 MiB record set", func() bool { return r.sending.Load() >= stalledBytes })
	began := time.Now()
	for r.m.Stats().Connected && time.Since(began) < wait+held+deadline {
		time.Sleep(10 * time.Millisecond)
	}
	up := time.Since(began)
	why := r.m.Stats().LastError
	// The send was seen waiting (at the limiter) a moment after it began:
	// the link holds at least the wait and HeldSend from then, less that
	// moment, which a second covers on a loaded machine.
	if up < wait+held-time.Second {
		t.Errorf("the link given up %v after a 48 MiB send began its wait of at least %v at the rate limit (held send limit %v): %q",
			up.Round(time.Millisecond), wait, held, why)
	}
}
