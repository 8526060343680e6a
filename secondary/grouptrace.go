package secondary

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"duplex/consistency"
)

// The lag a secondary reports is the time since the applied group's
// consistency time, and it grows at whichever step of a group's way holds
// it: the primary's cut and send, the link, the Former waiting for a
// subsystem, the journal's write and fsync, the applier's queue, the
// volumes' writes. The figure alone does not say which. At debug level the
// secondary logs each group applied with the wall times of those steps,
// as offsets from its consistency time (the primary's clock; the sites of
// a bench share one), so that a stretch of high lag can be read as the
// step that grew. Checkpoints are logged the same way: their fsyncs queue
// on the disk the journal's fsync waits on.

// groupTrace is the wall time of each step of one group.
type groupTrace struct {
	cut          time.Time     // the primary's mover read the sidefile for the latest record set of that frame
	roomWait     time.Duration // the secondary's reader waited for room before reading that frame
	arrived      time.Time     // the frame that completed it was read off the link
	formed       time.Time     // the Former formed it
	journalStart time.Time     // its journal write began (after those of the groups before)
	synced       time.Time     // the journal's fsync covering it returned
	batch        int           // groups journaled under that fsync
}

// maxTraces bounds the groups traced but not yet applied: groups held by a
// resync or a Gate are applied later or never from memory, and their
// traces are dropped rather than kept.
const maxTraces = 1024

// frameTimes are the times of the frame that completes a group.
type frameTimes struct {
	cut      time.Time // the latest mover's read of the sidefile among its record sets
	roomWait time.Duration
	at       time.Time // read off the link
}

func timesOf(in *inbound) frameTimes {
	ft := frameTimes{at: in.at, roomWait: in.roomWait}
	for _, rs := range in.sets {
		if c := time.Unix(0, rs.ReadTime); rs.ReadTime != 0 && c.After(ft.cut) {
			ft.cut = c
		}
	}
	return ft
}

// setRead is a record set's read of the sidefile: when, and the horizon
// it reached.
type setRead struct {
	horizon int64
	at      time.Time
}

// timesTaken returns the times of frame in, which the Former just took,
// and keeps the reads of its record sets for the groups they may cut.
// Called with s.mu held.
func (s *Secondary) timesTaken(in *inbound) frameTimes {
	for _, rs := range in.sets {
		if rs.ReadTime != 0 && len(s.reads) < maxTraces {
			s.reads = append(s.reads, setRead{horizon: rs.Horizon, at: time.Unix(0, rs.ReadTime)})
		}
	}
	return timesOf(in)
}

// cutOf returns the cut of g, formed from the frame of times in: the
// earliest read of the sidefile that reached g's time among the record
// sets taken. That is the frame's own only while frames come in the order
// they were read: a set taken ahead of a missing one (whose frame was lost
// and is sent again) is formed into a group only with the frame that fills
// the gap, read before it. The reads g's time passed cut no later group.
// Called with s.mu held.
func (s *Secondary) cutOf(g *consistency.Group, in *frameTimes) time.Time {
	var cut time.Time
	for _, r := range s.reads {
		if r.horizon >= g.Time && (cut.IsZero() || r.at.Before(cut)) {
			cut = r.at
		}
	}
	s.reads = slices.DeleteFunc(s.reads, func(r setRead) bool { return r.horizon <= g.Time })
	if cut.IsZero() && !in.cut.Before(time.Unix(0, g.Time)) {
		// No set's read reached g's time: a heartbeat did, stamped at a
		// read the frame does not carry. A set of the frame read at or
		// after g's time came from that read or a later one; one read
		// before it (a set sent again beside the heartbeat) did not, and
		// the cut is left unknown: zero, at g's time.
		cut = in.cut
	}
	return cut
}

// traceFormed starts g's trace, formed now from the frame of times in.
// Called with s.mu held.
func (s *Secondary) traceFormed(g *consistency.Group, in *frameTimes) {
	if !s.tracing {
		return
	}
	if s.traces == nil || len(s.traces) >= maxTraces {
		s.traces = map[*consistency.Group]*groupTrace{}
	}
	s.traces[g] = &groupTrace{cut: s.cutOf(g, in), roomWait: in.roomWait, arrived: in.at, formed: time.Now()}
}

// traceJournaled records that gs were written to the journal from start and
// synced at synced, under one fsync. Called with s.mu held.
func (s *Secondary) traceJournaled(gs []*consistency.Group, start, synced time.Time) {
	if !s.tracing {
		return
	}
	for _, g := range gs {
		if t := s.traces[g]; t != nil {
			t.journalStart, t.synced, t.batch = start, synced, len(gs)
		}
	}
}

// takeTrace removes and returns g's trace (nil if none). Called with s.mu
// held.
func (s *Secondary) takeTrace(g *consistency.Group) *groupTrace {
	if !s.tracing || g == nil {
		return nil
	}
	t := s.traces[g]
	delete(s.traces, g)
	return t
}

// logApplied logs the steps of job's group, applied from start to now.
func (s *Secondary) logApplied(job *applyJob, start time.Time) {
	t := job.trace
	if t == nil || job.g == nil {
		return
	}
	now := time.Now()
	ct := time.Unix(0, job.g.Time)
	ms := func(at time.Time) float64 { return float64(at.Sub(ct).Microseconds()) / 1e3 }
	cut := t.cut
	if cut.IsZero() {
		// A frame of heartbeats only: no read of the sidefile to time.
		cut = ct
	}
	var bytes int
	for _, u := range job.g.Updates {
		bytes += len(u.Data)
	}
	s.log.LogAttrs(context.Background(), slog.LevelDebug, "group applied",
		slog.Uint64("group", job.g.Number), slog.Int("updates", len(job.g.Updates)), slog.Int("bytes", bytes),
		slog.Int("batch", t.batch),
		// Offsets from the consistency time, in ms: each is the lag the
		// group had reached at that step.
		slog.Float64("cut_ms", ms(cut)), slog.Float64("room_wait_ms", float64(t.roomWait.Microseconds())/1e3),
		slog.Float64("arrived_ms", ms(t.arrived)), slog.Float64("formed_ms", ms(t.formed)),
		slog.Float64("journal_ms", ms(t.journalStart)), slog.Float64("synced_ms", ms(t.synced)),
		slog.Float64("apply_ms", ms(start)), slog.Float64("applied_ms", ms(now)))
}

// logCheckpoint logs a checkpoint's steps: its start of writeback (from
// start), and its fsyncs and state file (from ck, none if zero), ended now.
func (s *Secondary) logCheckpoint(start, ck time.Time) {
	if !s.tracing {
		return
	}
	now := time.Now()
	wb := now.Sub(start)
	var fsync time.Duration
	if !ck.IsZero() {
		wb, fsync = ck.Sub(start), now.Sub(ck)
	}
	if wb+fsync < time.Millisecond {
		// Nothing to write back and no checkpoint due: most calls.
		return
	}
	s.log.LogAttrs(context.Background(), slog.LevelDebug, "checkpointer",
		slog.Float64("writeback_start_ms", float64(wb.Microseconds())/1e3),
		slog.Float64("checkpoint_ms", float64(fsync.Microseconds())/1e3))
}

// traceOn reports whether the log takes debug records.
func traceOn(l *slog.Logger) bool { return l.Enabled(context.Background(), slog.LevelDebug) }
