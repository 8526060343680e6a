package secondary

import (
	"errors"
	"fmt"
	gomaps "maps"
	"sync"
	"time"

	"duplex/apply"
	"duplex/consistency"
	"duplex/history"
	"duplex/journal"
	"duplex/recordset"
	"duplex/transport"
)

// Gate holds applying at a limit: a coupled group's master consistency
// time (package coupling). No update stamped after the limit is applied;
// groups journaled beyond it wait in the journal. Where the next group
// straddles the limit its updates through the limit are applied, so that
// every member of the group can be at exactly the master time, not only at
// a group boundary of its own before it.
//
// A held secondary journals ahead: it goes on receiving, journaling and
// acknowledging groups while the limit holds (another member silent, etcd
// unreachable, a member not started yet), and welcomes a primary that
// links meanwhile. The applier's queue holds two groups with their data;
// past that the applier is left only each group's number, time and pair
// states (gated.ahead), and reads the groups back from the journal as the
// limit reaches them, a batch at a time, each applied whole and recorded
// as a point of its own (history, read views). Waiting in the queue, the
// receiver stopped acknowledging after two groups, and the primary paced
// its writes and suspended its pairs while any member was silent. What
// bounds journaling ahead is the journal's room, which the primary learns
// in every acknowledgement: once the file system could not take another
// group besides the room the journal keeps (holdReserve), the receiver
// waits for room before it forms one (awaitRoomLocked), and the primary
// paces. A
// restart replays the journal through the limit and leaves the groups
// past it ahead of the applier again.
type Gate interface {
	// Limit returns the time through which updates may be applied, and a
	// channel closed once it rises (nil: it never does).
	Limit() (int64, <-chan struct{})
}

// gated is the applier's view of the Gate. partial, limit, ahead, skipped
// and passed are guarded by posMu.
type gated struct {
	// done is closed by Close, Run's end and Fence: the applier stops
	// waiting. A fence can be undone (UndoFence), which hands the gate a
	// new one (rearm); a stop by Close or Run's end is for good. stopMu
	// guards done, closed and ended: rearm replaces done while receivers
	// and the applier may read it.
	stopMu sync.Mutex
	done   chan struct{}
	closed bool
	ended  bool
	// ahead are the groups journaled ahead of the applier's queue, in
	// order, after every group in it; kick tells the applier of one.
	ahead []applyJob
	kick  chan struct{}
	// partial is the time through which the group after the applied one
	// is applied (0: none of it): the volumes are an image as of it.
	partial int64
	limit   int64
	// skipped is the last group the applier skipped once the gate was
	// stopped (Close, Fence).
	skipped uint64
	// passed are the groups skipped, in order, as journaled groups to read
	// back: an undone fence hands them back to the applier, ahead of any
	// group sent since. Without them the applier would take the next group
	// sent as following the applied one, and the groups between would be
	// applied, if ever, as part of it: never each at its own time.
	passed []applyJob
	// pending are the groups Open's replay leaves ahead of the applier:
	// those journaled beyond the limit.
	pending []applyJob
}

// stop stops the gate until an undone fence rearms it: Fence.
func (g *gated) stop() {
	g.stopMu.Lock()
	defer g.stopMu.Unlock()
	g.stopLocked()
}

// end stops the gate for good: Close and Run's end. In one hold of
// stopMu, so that no rearm comes between the stop and the mark.
func (g *gated) end() {
	g.stopMu.Lock()
	defer g.stopMu.Unlock()
	g.stopLocked()
	g.ended = true
}

func (g *gated) stopLocked() {
	if !g.closed && g.done != nil {
		close(g.done)
		g.closed = true
	}
}

// stopped returns the channel closed once the gate is stopped.
func (g *gated) stopped() <-chan struct{} {
	g.stopMu.Lock()
	defer g.stopMu.Unlock()
	return g.done
}

// rearm starts a gate a fence stopped again, and reports whether it did:
// not once it is stopped for good.
func (g *gated) rearm() bool {
	g.stopMu.Lock()
	defer g.stopMu.Unlock()
	if g.ended {
		return false
	}
	if g.closed {
		g.done, g.closed = make(chan struct{}), false
	}
	return true
}

// rearmGate starts the gate again after a fence is undone, and hands the
// applier back the groups it skipped once the fence stopped the gate, to
// apply as the limit reaches each, before any group sent since. Only
// after a fence that returned: the applier has skipped every group queued
// then and waits for the next, and none is queued until a primary links
// again, which the fence refused until now. Called with s.mu held.
func (s *Secondary) rearmGate() {
	if s.cfg.Gate == nil || !s.gated.rearm() {
		return
	}
	s.posMu.Lock()
	defer s.posMu.Unlock()
	var back []applyJob
	for _, job := range s.gated.passed {
		if job.through > s.durable.Group {
			back = append(back, job)
		}
	}
	s.gated.passed, s.gated.skipped = nil, 0
	if len(back) == 0 {
		return
	}
	s.gated.ahead = append(back, s.gated.ahead...)
	select {
	case s.gated.kick <- struct{}{}:
	default: // the applier is told already
	}
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

// Batches the applier applies from the journal under one exclusion of
// readers: a held secondary released after a long silence catches up a
// batch at a time, and readers wait for no more than one.
const (
	aheadBatchGroups = 64
	aheadBatchBytes  = 64 << 20
)

// applyGated applies job once the Gate's limit reaches its time, and the
// part of it through the limit meanwhile where it can. A job the Gate
// held journaled ahead is applied with those after it the limit has
// reached too, read back from the journal in one pass; job is then the
// last of them.
func (s *Secondary) applyGated(job *applyJob) error {
	if s.cfg.Gate == nil {
		return s.applyJournaled([]applyJob{*job})
	}
	// next is the job's group, for its part through the limit.
	next := job.g
	for {
		limit, changed := s.cfg.Gate.Limit()
		s.posMu.Lock()
		s.gated.limit = limit
		applied := s.durable.Group
		s.posMu.Unlock()
		if job.groupTime() <= limit {
			jobs := []applyJob{*job}
			if job.g == nil {
				jobs = s.popThrough(jobs, limit)
				*job = jobs[len(jobs)-1]
			}
			return s.applyJournaled(jobs)
		}
		if job.number() == applied+1 {
			if next == nil {
				g, err := s.readJournaled(job.through)
				if err != nil {
					return err
				}
				next = g
			}
			if err := s.applyPrefix(next, limit, job.vols); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-s.gated.stopped():
			return errGateClosed
		}
	}
}

// journalAhead hands a journaled group to the applier as enqueue does,
// but never waits for room: once the queue is full, or groups wait ahead
// of it already, the applier is left the group's number, time and pair
// states, and reads the group back from the journal when the limit
// reaches it. Called with s.mu held.
func (s *Secondary) journalAhead(job applyJob) {
	s.posMu.Lock()
	defer s.posMu.Unlock()
	if len(s.gated.ahead) == 0 {
		select {
		case s.applyQ <- job:
			s.dataQueued = job.g.Number
			return
		default:
		}
	}
	g := job.g
	s.gated.ahead = appendAhead(s.gated.ahead, applyJob{through: g.Number, time: g.Time, vols: job.vols, size: groupSize(g)})
	select {
	case s.gated.kick <- struct{}{}:
	default: // the applier is told already
	}
}

// appendAhead appends job to ahead, sharing the pair states of the group
// before it where they are the same: a long hold keeps a map of every
// volume for each group only where the states change.
func appendAhead(ahead []applyJob, job applyJob) []applyJob {
	if n := len(ahead); n > 0 && gomaps.Equal(ahead[n-1].vols, job.vols) {
		job.vols = ahead[n-1].vols
	}
	return append(ahead, job)
}

// popAhead takes the first group journaled ahead of the applier, unless
// the queue holds one: the receiver queues a group (under posMu) only
// with nothing ahead, so one that came between the applier's look at the
// queue and this comes before those ahead now.
func (s *Secondary) popAhead() (applyJob, bool) {
	if s.cfg.Gate == nil {
		return applyJob{}, false
	}
	s.posMu.Lock()
	defer s.posMu.Unlock()
	if len(s.gated.ahead) == 0 || len(s.applyQ) > 0 {
		return applyJob{}, false
	}
	job := s.gated.ahead[0]
	s.gated.ahead = s.gated.ahead[1:]
	if len(s.gated.ahead) == 0 {
		s.gated.ahead = nil
	}
	return job, true
}

// popThrough appends to jobs, up to a batch, the groups ahead that the
// limit has reached and that follow the last of jobs. Called by the
// applier once the first of jobs came from ahead. Only the groups right
// after it: once the applier took the last group ahead, the receiver
// hands the next to the queue with its data and leaves those after it
// ahead again, to be applied after the queued one.
func (s *Secondary) popThrough(jobs []applyJob, limit int64) []applyJob {
	s.posMu.Lock()
	defer s.posMu.Unlock()
	size := jobs[0].size
	n := 0
	for n < len(s.gated.ahead) && len(jobs) < aheadBatchGroups && s.gated.ahead[n].time <= limit &&
		s.gated.ahead[n].through == jobs[len(jobs)-1].number()+1 {
		if size += s.gated.ahead[n].size; size > aheadBatchBytes {
			break
		}
		jobs = append(jobs, s.gated.ahead[n])
		n++
	}
	s.gated.ahead = s.gated.ahead[n:]
	if len(s.gated.ahead) == 0 {
		s.gated.ahead = nil
	}
	return jobs
}

// readJournaled reads journaled group n back.
func (s *Secondary) readJournaled(n uint64) (*consistency.Group, error) {
	var g *consistency.Group
	err := s.journal.Replay(n-1, func(index uint64, data []byte) error {
		if index == n {
			var err error
			if g, err = s.decodeJournaled(index, data); err != nil {
				return err
			}
		}
		return errEnough
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, fmt.Errorf("secondary: %w", err)
	}
	if g == nil {
		return nil, fmt.Errorf("secondary: journal %s: group %d not found", s.cfg.JournalDir, n)
	}
	return g, nil
}

// roomPoll is how often a receiver waiting for journal room looks again.
const roomPoll = 50 * time.Millisecond

// roomAnswer is how often a receiver waiting for journal room, for the
// journal's write and fsync or for the applier (answerWhileBusy), sends
// the primary a receipt: the primary gives up a link on which the secondary
// says nothing for its silence time (5 s by default), heartbeats or record
// sets sent, and redials, while this one is reachable and only behind. The
// receipt acknowledges nothing new (what arrived in order, as the one sent
// before a batch is journaled). A primary gives up all the same a link on
// which nothing new is acknowledged for its HeldSend, a minute by default
// (awaitRoomLocked).
const roomAnswer = time.Second

// awaitRoomLocked paces a coupled secondary whose journal's file system is
// down to the room the journal keeps besides (holdReserve) while groups
// journaled wait to be applied: it forms no group until applying them
// lets the journal release them or the file system has room again.
// Meanwhile it acknowledges nothing, so the primary paces its writes,
// rather than journal until an append fails for room, which stops the
// secondary until a restart. Its receipts (roomAnswer) keep the link up
// past the primary's silence time and say there is no room in the journal
// (JournalFree 1); once nothing new was acknowledged for the primary's
// HeldSend (a minute by default) the primary gives the link up all the
// same, saying the secondary has no room in its journal, and redials: the
// session sees the link down and suspends its pairs after suspend_after,
// so that the application never waits for ever on a full sidefile while
// a member stays silent. It
// waits without s.mu and before anything is formed: a primary that links
// meanwhile is welcomed at once, and this receive then ends. Called with
// s.mu held.
func (s *Secondary) awaitRoomLocked(conn transport.Conn) error {
	if s.cfg.Gate == nil {
		return nil
	}
	var since, answered time.Time
	defer func() { s.stats.JournalFullSince = time.Time{} }()
	for s.shortOfRoomLocked() {
		if !since.IsZero() && time.Since(answered) >= roomAnswer {
			answered = time.Now()
			// No room, whatever the file system holds above the
			// reserve: nothing more is taken until there is, and the
			// primary says why when it gives the link up. A wait, to a
			// primary that reads it: nothing is read meanwhile, so
			// what it sent since waits in the link's buffers, and
			// sent again every resend period of the wait, each copy
			// would be a duplicate dropped. Its HeldSend, counted
			// from the last progress, still gives the link up.
			s.receiptOf(conn, 1, time.Since(since))
		}
		if since.IsZero() {
			since = time.Now()
			answered = since
			s.stats.JournalFullSince = since
			s.log.Warn("coupled: the journal's file system is down to the journal's reserve with groups journaled past the master time: "+
				"acknowledging nothing more until they are applied or there is room",
				"journaled_group", s.journaled.Group, "journal_bytes", s.journal.Bytes(), "journal_reserve_bytes", s.holdReserve())
		}
		s.mu.Unlock()
		t := time.NewTimer(roomPoll)
		select {
		case <-t.C:
		case <-s.gated.stopped():
		}
		t.Stop()
		s.mu.Lock()
		if s.conn != conn {
			return errReplaced
		}
		select {
		case <-s.gated.stopped():
			return errGateClosed
		default:
		}
	}
	if !since.IsZero() {
		s.log.Info("coupled: journal room again: acknowledging", "waited", time.Since(since).Round(time.Millisecond))
	}
	return nil
}

// shortOfRoomLocked says the journal's file system could not take the
// largest group and keep the journal's reserve, while groups journaled
// wait to be applied, which frees room. Stopping there, a restart finds
// the room Open checks for (journal.Needs, the reserve), however full of
// groups past the limit the journal is. A resync's hold is given up before
// that (releaseIfShort); with nothing unapplied the next group is
// journaled, and a file system filled by others stops the secondary as it
// would any other. Called with s.mu held.
func (s *Secondary) shortOfRoomLocked() bool {
	if s.pairs.holding() {
		return false
	}
	s.posMu.Lock()
	applied := s.durable.Group
	s.posMu.Unlock()
	if s.journaled.Group <= applied {
		return false
	}
	// The reading receipts use: taken afresh once a group is journaled.
	free, ok := s.room.cached(s.journalEpoch.Load(), time.Now())
	if !ok {
		free, ok = s.journalFree()
	}
	return ok && int64(free) < s.holdReserve()+journal.RecordSpace(s.largestGroup())
}

// nextJob returns the next group to apply: from the applier's queue, then
// from the groups journaled ahead of it; false once the queue is closed
// and nothing is left ahead. q is the applier's queue, nil once closed.
func (s *Secondary) nextJob(q *chan applyJob) (applyJob, bool) {
	for {
		if *q != nil {
			select {
			case job, ok := <-*q:
				if ok {
					return job, true
				}
				*q = nil
			default:
			}
		}
		if job, ok := s.popAhead(); ok {
			return job, true
		}
		if *q == nil {
			return applyJob{}, false
		}
		select {
		case job, ok := <-*q:
			if ok {
				return job, true
			}
			*q = nil
		case <-s.gated.kick:
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
		s.unstarted[name] = t
	}
	s.flushMu.Unlock()
	s.posMu.Lock()
	s.gated.partial = limit
	s.posMu.Unlock()
	// The checkpointer starts their writeback, as it does a whole group's
	// (startWriteback): a long group applied in prefixes for a while would
	// otherwise leave every page of them dirty for the checkpoint's fsync
	// once the group is whole. Not waited for: nil during Open's replay,
	// whose checkpoint follows.
	select {
	case s.ckReq <- struct{}{}:
	default:
	}
	return nil
}

// undoPastLimit takes the volumes back to group through, the last the
// replay applies whole, where they may hold writes of a later group past
// the Gate's limit: the undo of group beyond, the first journaled past
// it, or of a later one is held, captured before its first part was
// applied through an earlier limit, which may have been above this one.
// Left there, the volumes held writes stamped after the time reported,
// the limit's (a plain recover said them consistent as of a time whose
// data they were past, and a coupled group's other members may hold none
// of what this one holds past it), or, if a kill stopped that part's
// apply part-way, some of its writes and not others. Undone, the replay
// applies the part through this limit over volumes at group through, and
// they hold exactly what is reported. The undo is kept (not voided): its
// before images are what the volumes hold again, so the rest of the group
// captures nothing more. A Gate keeps its limit across restarts (a
// coupled group's mark), so the part is usually applied again as it was.
// Undo is idempotent: a kill part-way leaves it to the next open.
func (s *Secondary) undoPastLimit(through, beyond uint64, limit int64) error {
	if s.hist == nil || s.hist.Last() < beyond {
		// No part of beyond was applied with history kept. Without
		// history the Gate's kept limit is all there is: the part
		// applied before is applied again through it.
		return nil
	}
	s.log.Info("coupled: the volumes may hold part of a group applied through an earlier master time: taking them back to the group before it, "+
		"then applying it through the master time", "group", beyond, "master_time", time.Unix(0, limit).UTC())
	if err := s.hist.Undo(history.Whole(through), s.undoSinks()); err != nil {
		return fmt.Errorf("taking the volumes back to group %d from the part of group %d applied through an earlier master time: %w",
			through, beyond, err)
	}
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

// firstAnswer is when a receiver waiting on the disk (answerWhileBusy)
// sends its first receipt, before the primary's resend timer runs out (its
// Retransmit, 500 ms at the least by default).
const firstAnswer = 250 * time.Millisecond
