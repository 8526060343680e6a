package mover

import "time"

// A burst of large writes costs the primary's CPU twice: serving the
// writes, and sending them (the record sets' encoding and checksums, and
// the vectored write whose copy into the socket, on loopback the
// receiver's TCP path too, runs on the sender's CPU): about as much again
// per megabyte. While the burst lasts the sends compete with the writes
// for the CPU, and none of them is urgent: the sidefile is there to hold
// a burst (step (b)). So a turn that brings a burst's weight waits, in the
// session goroutine, and its record sets go once the writes slow down
// (no cut brought a burst's weight for a few intervals), or the sidefile fills toward its pacing start, or
// the oldest of them has waited Config.BurstWait from its reading, or a
// Quiesce asks for everything: whichever comes first. A steady rate's
// turns (the lag's) never weigh that much, and never wait.
//
// Only the record sets wait: the heartbeats of the turn go as ever (they
// name only record sets already sent), and so do the retransmissions,
// whose presence ends the wait; the receipts, the window and the
// silence and retransmission checks go on, and the end of the session's
// context ends the wait at once.
const (
	// deferFrom is the least a cut brings per interval for record sets
	// to wait: 4 MiB an interval is 200 MiB/s at the default 20 ms,
	// several times what 4 KiB writes reach at saturation on the bench's
	// machine (bench/RESULTS.md), a small share of a 1 MiB burst's rate.
	// Per interval since the cut before: a cut late by some intervals
	// (the process descheduled, a pause) carries their writes too, and a
	// steady rate's turns must never wait.
	deferFrom = 4 << 20
	// deferQuiet is how many intervals after the last cut of a burst's
	// weight record sets still wait: a burst's writes come unevenly (the
	// writer descheduled for an interval on a busy CPU), and one light
	// cut in the middle of it would send what waits while the writes go
	// on.
	deferQuiet = 3
	// deferFill is the share of what a sidefile holds unpaced from which
	// record sets no longer wait: they are on their way a little before
	// the writers would be paced.
	deferFill = 0.9
)

// cutBurst notes a cut that formed cost bytes at now: a burst's if they
// are deferFrom or more per interval since the cut before. m.mu held.
func (m *Mover) cutBurst(cost int64, now time.Time) {
	since := now.Sub(m.cutAt)
	if m.cutAt.IsZero() {
		since = m.cfg.Interval
	}
	m.cutAt = now
	if cost >= deferFrom && float64(cost) >= deferFrom*float64(since)/float64(m.cfg.Interval) {
		m.burstAt = now
	}
}

// deferral says whether this turn's record sets wait, and until when at
// most: a cut within the last deferQuiet intervals brought a burst's
// weight, nothing is to be sent
// again, no Quiesce is under way, every sidefile holds less than deferFill
// of what it holds unpaced, and the oldest record set to send was read
// less than Config.BurstWait ago.
func (m *Mover) deferral(now time.Time) (time.Time, bool) {
	if m.cfg.BurstWait < 0 {
		return time.Time{}, false
	}
	m.mu.Lock()
	var first int64
	if now.Sub(m.burstAt) <= deferQuiet*m.cfg.Interval && m.quiescing == 0 && len(m.resend) == 0 {
		for _, h := range m.queue {
			if !h.gone && !h.sent {
				first = h.first
				break
			}
		}
	}
	m.mu.Unlock()
	if first == 0 {
		return time.Time{}, false
	}
	until := time.Unix(0, first).Add(m.cfg.BurstWait)
	if !now.Before(until) {
		return time.Time{}, false
	}
	for _, s := range m.subs {
		sf := s.ss.Sidefile()
		if float64(sf.Stats().Used) >= deferFill*float64(sf.Unpaced()) {
			return time.Time{}, false
		}
	}
	return until, true
}
