package secondary

import (
	"errors"
	"sync"

	"duplex/apply"
	"duplex/consistency"
	"duplex/recordset"
)

// Gate holds applying at a limit: a coupled group's master consistency
// time (package coupling). No update stamped after the limit is applied;
// groups journaled beyond it wait in the applier's queue (which holds two:
// the receiver then waits for room, and the primary for its
// acknowledgements), or, after a restart, in the journal. Where the next
// group straddles the limit its updates through the limit are applied, so
// that every member of the group can be at exactly the master time, not
// only at a group boundary of its own before it.
type Gate interface {
	// Limit returns the time through which updates may be applied, and a
	// channel closed once it rises (nil: it never does).
	Limit() (int64, <-chan struct{})
}

// gated is the applier's view of the Gate. partial and limit are
// guarded by posMu.
type gated struct {
	once sync.Once
	done chan struct{} // closed by Close: the applier stops waiting
	// partial is the time through which the group after the applied one
	// is applied (0: none of it): the volumes are an image as of it.
	partial int64
	limit   int64
	// skipped is the last group the applier skipped once the gate was
	// stopped (Close, Fence).
	skipped uint64
	// pending is the job Open leaves for the applier: the journaled groups
	// beyond the limit.
	pending *applyJob
}

func (g *gated) stop() {
	g.once.Do(func() {
		if g.done != nil {
			close(g.done)
		}
	})
}

var errGateClosed = errors.New("secondary closed while the gate held the group")

func (j applyJob) number() uint64 {
	if j.g != nil {
		return j.g.Number
	}
	return j.through
}

func (j applyJob) groupTime() int64 {
	if j.g != nil {
		return j.g.Time
	}
	return j.time
}

// applyGated applies job once the Gate's limit reaches its time, and the
// part of it through the limit meanwhile where it can.
func (s *Secondary) applyGated(job applyJob) error {
	if s.cfg.Gate == nil {
		return s.applyJournaled(job.number(), job.g, job.vols)
	}
	for {
		limit, changed := s.cfg.Gate.Limit()
		s.posMu.Lock()
		s.gated.limit = limit
		next := s.durable.Group + 1
		s.posMu.Unlock()
		if job.groupTime() <= limit {
			return s.applyJournaled(job.number(), job.g, job.vols)
		}
		if job.g != nil && job.g.Number == next {
			if err := s.applyPrefix(job.g, limit, job.vols); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-s.gated.done:
			return errGateClosed
		}
	}
}

// prefix returns the updates of g stamped at or before limit, or ok false
// when they include a pair-state marker: where a resync begins or ends is
// decided for whole groups only.
func prefix(g *consistency.Group, limit int64) (ups []recordset.Update, ok bool) {
	n := 0
	for n < len(g.Updates) && g.Updates[n].Timestamp <= limit {
		if g.Updates[n].Kind == recordset.KindMarker {
			return nil, false
		}
		n++
	}
	return g.Updates[:n], true
}

// applyPrefix applies g's updates through limit, the group after the
// applied one, under one exclusion of readers. vols is the pair state
// after g, which the history keeps with g's undo.
//
// With history, the undo of the whole of g is captured (and synced) before
// its first part is applied: the before images are then all of the
// volumes as of the applied group, what undoing g must write back whatever
// part of g they hold. A later part, or the rest applied once the limit
// passes g (applyLocked), finds the undo held (Log.Has) and captures
// nothing: read then, the before images would include g's own writes.
func (s *Secondary) applyPrefix(g *consistency.Group, limit int64, vols map[string]apply.VolumeState) error {
	s.posMu.Lock()
	done := s.gated.partial
	s.posMu.Unlock()
	if limit <= done {
		return nil
	}
	ups, ok := prefix(g, limit)
	if !ok {
		return nil
	}
	s.view.Lock()
	defer s.view.Unlock()
	if s.torn != nil {
		return s.torn
	}
	if len(ups) > 0 {
		if err := s.capture(g, false, vols); err != nil {
			return err
		}
		if err := s.keepForViews(&consistency.Group{Number: g.Number, Updates: ups}); err != nil {
			return err
		}
	}
	touched, err := apply.Updates(&consistency.Group{Number: g.Number, Time: limit, Updates: ups}, s.targets)
	if err != nil {
		s.torn = err
		return err
	}
	s.flushMu.Lock()
	for name, t := range touched {
		s.unflushed[name] = t
	}
	s.flushMu.Unlock()
	s.posMu.Lock()
	s.gated.partial = limit
	s.posMu.Unlock()
	return nil
}

// coupledTimeLocked is the time a coupled secondary publishes. Called with
// s.mu held.
func (s *Secondary) coupledTimeLocked() int64 {
	if s.pairs.holding() {
		return s.queued.Time
	}
	return max(s.journaled.Time, s.formedTime)
}
