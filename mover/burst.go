package mover

import (
	"time"

	"duplex/recordset"
)

// A burst of large writes costs the primary's CPU twice: serving the
// writes, and sending them (the record sets' encoding and checksums, and
// the vectored write whose copy into the socket, on loopback the
// receiver's TCP path too, runs on the sender's CPU): about as much again
// per megabyte. While the burst lasts the sends compete with the writes
// for the CPU, and none of them is urgent: the sidefile is there to hold
// a burst (step (b)). So a turn that brings a burst's weight waits, in the
// session goroutine, and its record sets go once the writes slow down
// (no cut brought a burst's weight for quietFor), or the sidefile fills toward its pacing start, or
// the oldest of them has waited Config.BurstWait from its reading, or a
// Quiesce asks for everything: whichever comes first. Only large writes
// weigh (burstWeight): a steady rate of small writes (the lag's) never
// waits; a steady stream of large writes that weighs as much as a burst
// waits like one, its lag bounded by Config.BurstWait.
//
// Only the record sets wait: the heartbeats of the turn go as ever (they
// name only record sets already sent), and so do the retransmissions,
// whose presence ends the wait; the receipts, the window and the
// silence and retransmission checks go on, and the end of the session's
// context ends the wait at once.
const (
	// deferFrom is the least a cut brings per interval, in large writes
	// (burstWeight), for record sets to wait: 1 MiB an interval is 50
	// MiB/s at the default 20 ms, a fifth of a 1 MiB burst's rate on the
	// bench's machine, which a busy CPU still lets the burst reach. At 4
	// MiB (200 MiB/s) a burst slowed by the load never waited, and its
	// sends took the CPU from its writes just when it was scarce
	// (bench/RESULTS.md). Per interval since the cut before: a cut late
	// by some intervals (the process descheduled, a pause) carries their
	// writes too.
	deferFrom = 1 << 20
	// burstMin is the least data a write carries to weigh in a burst: a
	// steady rate of small writes, whose record sets are the lag, never
	// waits, whatever its rate.
	burstMin = recordset.SplitMin
	// deferQuiet is how many intervals after the last cut of a burst's
	// weight record sets still wait, and deferQuietFor how long at least:
	// a burst's writes come unevenly, and one light cut in the middle of
	// it would send what waits while the writes go on. On a loaded CPU
	// the writer is descheduled for longer than an interval or three:
	// with the burst's writer and the primary on one CPU at a load of 15,
	// 3 intervals (60 ms) sent 50 MiB of a 256 MiB burst that lasted
	// 0.7 s during it, and the sends then took the CPU from the writes
	// (bench/RESULTS.md). A burst's lag grows by the difference, within
	// Config.BurstWait as ever.
	deferQuiet    = 3
	deferQuietFor = 200 * time.Millisecond
	// deferFill is the share of what a sidefile holds unpaced from which
	// record sets no longer wait: they are on their way a little before
	// the writers would be paced. The subsystem checksums large writes at
	// capture from the same share on (captureSumFill).
	deferFill = 0.9
)

// burstWeight is the data of the writes among ups of burstMin bytes or
// more: what a cut weighs as a burst's.
func burstWeight(ups []recordset.Update) int64 {
	var n int64
	for i := range ups {
		if u := &ups[i]; u.Kind == recordset.KindWrite && len(u.Data) >= burstMin {
			n += int64(len(u.Data))
		}
	}
	return n
}

// cutBurst notes a cut that drained cost bytes of large writes
// (burstWeight) at now (an elapsed reading): a burst's if they are
// deferFrom or more per interval since the cut before. m.mu held.
func (m *Mover) cutBurst(cost int64, now time.Duration) {
	since := now - m.cutAt
	if m.cutAt == 0 {
		since = m.cfg.Interval
	}
	m.cutAt = now
	if cost >= deferFrom && float64(cost) >= deferFrom*float64(since)/float64(m.cfg.Interval) {
		m.burstAt = now
	}
}

// quietFor is how long after the last cut of a burst's weight its
// record sets still wait.
func (m *Mover) quietFor() time.Duration {
	return max(deferQuiet*m.cfg.Interval, deferQuietFor)
}

// deferral says whether this turn's record sets wait, and for how long at
// most: a cut within the last quietFor brought a burst's
// weight, nothing is to be sent again, no Quiesce is under way, every
// sidefile holds less than deferFill of what it holds unpaced, and the
// oldest record set to send was read less than Config.BurstWait ago. now
// and the readings it is measured from are on the monotonic clock
// (Mover.elapsed): on the wall clock, which the record sets' ReadTime is
// on, a step back would stretch the wait by the step, holding a burst in
// the sidefile, and the lag, longer than BurstWait promises.
func (m *Mover) deferral(now time.Duration) (time.Duration, bool) {
	if m.cfg.BurstWait < 0 {
		return 0, false
	}
	m.mu.Lock()
	var first time.Duration
	if m.burstAt != 0 && now-m.burstAt <= m.quietFor() && m.quiescing == 0 && len(m.resend) == 0 {
		for _, h := range m.queue {
			if !h.gone && !h.sent {
				first = h.first
				break
			}
		}
	}
	m.mu.Unlock()
	if first == 0 {
		return 0, false
	}
	left := first + m.cfg.BurstWait - now
	if left <= 0 {
		return 0, false
	}
	for _, s := range m.subs {
		sf := s.ss.Sidefile()
		if float64(sf.Stats().Used) >= deferFill*float64(sf.Unpaced()) {
			return 0, false
		}
	}
	return left, true
}
