package secondary

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"time"

	"duplex/apply"
	"duplex/consistency"
	"duplex/disk"
	"duplex/history"
	"duplex/recordset"
)

// HistoryConfig places and bounds a secondary's history.
type HistoryConfig struct {
	// Dir holds the history; empty: none is kept.
	Dir string
	// Window and MaxBytes bound it (history.Options).
	Window   time.Duration
	MaxBytes int64
	// Interval is the session's time-interval group length. A group that
	// spans more (formed while the secondary was behind) is kept in steps
	// of at most an interval of its updates, each a point of its own, so
	// that recover --at TIME reaches within an interval of TIME whatever
	// the groups' length. Zero: one point per group.
	Interval time.Duration
	// Left, with Dir empty, is where a history was kept before it was
	// turned off: Open finishes from it a recover --at stopped part-way
	// (finishRecoverTo), and keeps no history.
	Left string
	// Now, if set, is the clock the window is kept by (history.Options;
	// tests).
	Now func() time.Time
}

// ErrNoHistory is returned by RecoverTo on a secondary that keeps none.
var ErrNoHistory = errors.New("no history kept")

// ErrHandedOver is wrapped by RecoverTo's error for a secondary whose
// fence made its volumes usable before.
var ErrHandedOver = errors.New("recover to a time: the volumes were handed over")

// ErrOutsideWindow is wrapped by RecoverTo's error for a time the history
// does not reach.
var ErrOutsideWindow = errors.New("outside the history window")

func (s *Secondary) openHistory() error {
	s.sources = map[string]history.Source{}
	for n, v := range s.cfg.Volumes {
		s.sources[n] = v
	}
	hc := s.cfg.History
	if hc.Dir == "" {
		return s.finishRecoverToLeft(hc.Left)
	}
	l, err := history.Open(hc.Dir, history.Options{Window: hc.Window, MaxBytes: hc.MaxBytes, FS: s.cfg.FS, Now: hc.Now})
	if err != nil {
		return fmt.Errorf("secondary: %w", err)
	}
	s.hist = l
	d := s.durable
	switch {
	case d.Group == 0 && l.Last() != 0:
		// Nothing applied, yet undo held: the history of volumes that are
		// gone (a secondary created again beside it), whose group numbers
		// the new ones reuse.
		s.log.Warn("history: dropping the history of an earlier secondary (no group applied here yet)", "dir", hc.Dir)
		if err := l.Reset(); err != nil {
			return fmt.Errorf("secondary: %w", err)
		}
	case d.HistoryUnkept > 0 && l.Reaches(d.HistoryUnkept):
		// A run without history applied groups after the points the log
		// holds: undoing to one would leave those groups' writes.
		var state []byte
		if !plainDuplex(d.Volumes) {
			b, err := json.Marshal(d.Volumes)
			if err != nil {
				return fmt.Errorf("secondary: history of group %d: %w", d.Group, err)
			}
			state = b
		}
		s.log.Warn("history: groups were applied without history; the points before them are dropped",
			"applied_without_history_through", d.HistoryUnkept, "group", d.Group)
		if err := l.Gap(history.Header{Group: d.Group, Time: d.Time, State: state}); err != nil {
			return fmt.Errorf("secondary: %w", err)
		}
	}
	s.unkept = d.HistoryUnkept
	if err := s.finishRecoverTo(); err != nil {
		s.closeHistory()
		return err
	}
	return nil
}

// testUndoSink, if set, wraps each volume an undo writes back: a test's
// child process is killed between two of its writes, Open's among them.
var testUndoSink func(name string, s history.Sink) history.Sink

// undoSinks are the volumes an Undo writes back.
func (s *Secondary) undoSinks() map[string]history.Sink {
	sinks := map[string]history.Sink{}
	for n, v := range s.cfg.Volumes {
		sinks[n] = v
		if testUndoSink != nil {
			sinks[n] = testUndoSink(n, v)
		}
	}
	return sinks
}

// finishRecoverTo finishes a RecoverTo stopped part-way: its state file
// names the point before a byte is undone, so the volumes may be part-way
// back to it while the undo of what is after it is still held. Whatever
// opens the secondary next (the daemon, a plain recover, promote) would
// otherwise serve or promote that mix under the point's name. Undo is
// idempotent, so it is run again here, as RecoverTo run again would.
// Only a fenced secondary that recover --at took back (RecoveredFrom) is
// finished: an unfenced one holds the undo of a group it applies again.
//
// Before recover --at named a point (RecoveredFrom), the undo held of what
// is after the state file's group is that of a group the volumes held part
// of, applied through a coupled Gate's limit before recover --at's fence:
// held still through the part the fence recorded (FencedPart), which the
// volumes are then at, or being undone by a run stopped part-way (it
// cleared FencedPart first), which is finished here too. Left so, the
// volumes held part of the next group under the state file's name, and
// a run again reached no point of that part.
func (s *Secondary) finishRecoverTo() error {
	d := s.durable
	at := history.Point{Group: d.Group, Time: d.Time}
	if s.ident.Fenced == "" || !s.hist.Beyond(at) {
		return nil
	}
	if d.RecoveredFrom == 0 {
		if !s.ident.RecoverAt {
			return nil
		}
		if s.ident.FencedPart > d.Time {
			s.posMu.Lock()
			s.gated.partial = s.ident.FencedPart
			s.posMu.Unlock()
			return nil
		}
	}
	if err := s.hist.Undo(at, s.undoSinks()); err != nil {
		return fmt.Errorf("secondary: finishing the recover --at to group %d stopped part-way: %w; the volumes are not at a consistent point: run duplex recover --at again", d.Group, err)
	}
	if err := s.hist.Void(at); err != nil {
		return fmt.Errorf("secondary: finishing the recover --at to group %d stopped part-way: %w; run duplex recover --at again", d.Group, err)
	}
	s.log.Warn("finished a recover --at stopped part-way: the volumes are at the group it named",
		"group", d.Group, "consistency_time", fmtTime(d.Time))
	return nil
}

// finishRecoverToLeft is finishRecoverTo for a secondary whose history was
// turned off after a recover --at stopped part-way: nothing else would
// take the volumes the rest of the way, and they would be served or
// promoted part-way back under the point's name. The history kept before,
// in dir, still holds the undo; it is read for that alone.
//
// So is one stopped before it named a point, as a coupled secondary's
// undoes the part of the next group its fence recorded (FencedPart): the
// record cleared, the volumes may be part-way back from that part under
// the state file's group. The record kept, they hold the part whole,
// which status says, with no history needed to know it.
func (s *Secondary) finishRecoverToLeft(dir string) error {
	d := s.durable
	if s.ident.Fenced == "" || d.RecoveredFrom == 0 && !s.ident.RecoverAt {
		return nil
	}
	if d.RecoveredFrom == 0 && s.ident.FencedPart > d.Time {
		s.posMu.Lock()
		s.gated.partial = s.ident.FencedPart
		s.posMu.Unlock()
		return nil
	}
	if dir == "" || d.RecoveredFrom == 0 && s.cfg.Gate == nil {
		// Only a coupled secondary's volumes held part of a group to
		// undo before a point was named: any other's stay unread, and
		// a history kept before that cannot be read now does not stop
		// them.
		return nil
	}
	if _, err := disk.Or(s.cfg.FS).Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	l, err := history.Open(dir, history.Options{FS: s.cfg.FS})
	if err != nil {
		return fmt.Errorf("secondary: a recover --at took the volumes back to group %d, and history is off now: reading the history kept before, "+
			"to check that it finished: %w; set [secondary] history again and run duplex recover --at", d.Group, err)
	}
	s.hist = l
	defer s.closeHistory()
	if !l.Beyond(history.Point{Group: d.Group, Time: d.Time}) {
		return nil
	}
	s.log.Warn("history is off ([secondary] history), but a recover --at stopped part-way left the volumes part-way back to the group it named: "+
		"finishing it from the history kept before", "group", d.Group, "consistency_time", fmtTime(d.Time), "history", dir)
	if err := s.finishRecoverTo(); err != nil {
		return fmt.Errorf("%w (history is off: set [secondary] history again first)", err)
	}
	return nil
}

// historyUnkept is what the state file says of the groups applied without
// history once it names group.
func (s *Secondary) historyUnkept(group uint64) uint64 {
	if s.hist == nil {
		return group
	}
	return s.unkept
}

// closeHistory lets the history go under the volumes' lock: a read view
// of a past time takes it under the read side and reads its undo after it
// let the lock go, from a Log closed then at worst, never from none.
func (s *Secondary) closeHistory() error {
	s.view.Lock()
	h := s.hist
	s.hist = nil
	s.view.Unlock()
	if h == nil {
		return nil
	}
	return h.Close()
}

// capture keeps the undo of g before g is applied: its before images are
// synced first, so the volumes never hold a write of g whose before image
// a crash could lose. A group applied again after a restart whose undo is
// held already is not captured again: the volumes may hold part of it.
// midBatch says g is applied with later groups under one exclusion of
// readers (a resync's held groups): the volumes are never at g on its own.
// vols is the pair state after the last group applied with g.
func (s *Secondary) capture(g *consistency.Group, midBatch bool, vols map[string]apply.VolumeState) error {
	if s.hist == nil || len(g.Updates) == 0 || s.hist.Has(g.Number) {
		return nil
	}
	var state []byte
	if !midBatch && !plainDuplex(vols) {
		b, err := json.Marshal(vols)
		if err != nil {
			return fmt.Errorf("secondary: history of group %d: %w", g.Number, err)
		}
		state = b
	}
	h := history.Header{Group: g.Number, Time: g.Time, MidBatch: midBatch, State: state}
	err := s.hist.CaptureSteps(h, historySteps(g, s.cfg.History.Interval, midBatch || state != nil), s.sources)
	if err == nil || !errors.Is(err, history.ErrGroupTooLarge) && !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	// The group's before images exceed the bound, or the disk the history
	// shares with the journal has no room for them (a resync's held groups
	// need about the resync's size again): the history gives up its window
	// rather than stop the secondary with acknowledged groups unapplied.
	if gerr := s.hist.Gap(h); gerr != nil {
		return fmt.Errorf("secondary: history of group %d: %w (and recording the gap: %w)", g.Number, err, gerr)
	}
	s.log.Warn("history: the undo of a group is not kept, and the points before it are dropped: recover --at reaches back to this group only",
		"group", g.Number, "reason", err)
	return nil
}

// historySteps cuts g's updates into the steps its undo is kept in, each a
// point recover --at can reach: a step starts at an update and takes the
// updates stamped less than interval after it. A group formed while the
// secondary was behind spans many intervals (the primary grows a record
// set not yet sent, and the secondary forms one group of all it
// received), and a time inside it would otherwise reach only the group
// before. Each step ends at its last update's stamp, a consistency time as
// the group's is (every subsystem's horizon passed the group's time); the
// last ends at the group's time, with a point at its last update before
// that when the group's time is an interval or more after the step began.
// So the point reached by a time T, the newest at or before it, holds
// every update stamped at or before T - interval, however long the group.
// A group with a pair state of its own (whole) or none (midBatch) is one
// step: its points would need the pair states inside it.
func historySteps(g *consistency.Group, interval time.Duration, whole bool) []history.Step {
	iv := int64(interval)
	split := !whole && iv > 0
	for i := 0; split && i < len(g.Updates); i++ {
		split = g.Updates[i].Kind != recordset.KindMarker
	}
	var steps []history.Step
	var start int64
	for _, u := range g.Updates {
		if len(steps) == 0 || split && u.Timestamp-start >= iv {
			steps = append(steps, history.Step{})
			start = u.Timestamp
		}
		st := &steps[len(steps)-1]
		st.Time = u.Timestamp
		e := history.Extent{Volume: u.Volume, Offset: u.Offset}
		switch u.Kind {
		case recordset.KindWrite, recordset.KindCopy:
			e.Length, e.Data = uint64(len(u.Data)), u.Data
		case recordset.KindZeroes, recordset.KindTrim:
			e.Length, e.Zeros = u.Length, true
		default:
			continue
		}
		st.Ranges = append(st.Ranges, history.Range{Volume: e.Volume, Offset: e.Offset, Length: e.Length})
		if split {
			st.Writes = append(st.Writes, e)
		}
	}
	if len(steps) == 0 {
		return []history.Step{{Time: g.Time}}
	}
	last := &steps[len(steps)-1]
	last.Writes = nil
	if !split || g.Time-start < iv || last.Time == g.Time {
		last.Time = g.Time
		return steps
	}
	return append(steps, history.Step{Time: g.Time})
}

// plainDuplex reports whether every volume's pair is duplex and its copy
// whole: the history then keeps no state with the group.
func plainDuplex(vols map[string]apply.VolumeState) bool {
	for _, v := range vols {
		if v != (apply.VolumeState{State: "duplex"}) {
			return false
		}
	}
	return true
}

// historyStats fills in the history's window. Called with s.mu held.
func (s *Secondary) historyStats(st *Stats, durable apply.State) {
	if s.hist == nil {
		return
	}
	st.History = true
	// The newest point recover --at and views reach: with part of the
	// next group applied through a coupled Gate's limit (st.Time is
	// then its time), its newest step at or before the limit.
	st.HistoryNewest = durable.Time
	if p, ok := s.stepInPart(st.Time, durable, st.Time); ok {
		st.HistoryNewest = p.Time
	}
	st.HistoryBytes = s.hist.Bytes()
	if ts, ok := s.hist.Stopped(); ok {
		st.HistoryOverLimit = overLimit(ts, s.cfg.History)
	}
	if p, ok := s.hist.Oldest(); ok && p.Group <= durable.Group {
		st.HistoryOldest, st.HistoryOldestGroup = p.Time, p.Group
	} else if durable.Group > 0 {
		// Nothing kept yet: the applied group itself is the window.
		st.HistoryOldest, st.HistoryOldestGroup = durable.Time, durable.Group
	}
}

// overLimit says why the history is over its window or MaxBytes (ts).
func overLimit(ts history.TrimStopped, hc HistoryConfig) string {
	limit := fmt.Sprintf("its window of %s or its bound of %d MiB", hc.Window, hc.MaxBytes>>20)
	since := ts.Since.UTC().Format(time.RFC3339)
	switch {
	case ts.Holds > 0 && ts.Err != nil:
		// The holds only delay the next try: the error is what the
		// operator has to fix.
		return fmt.Sprintf("kept over %s since %s: trimming it failed, and so did every try since (%v); %d reader(s) of the past "+
			"(recover --at, a view of a past time as it opens) hold its old end now; tried again once they are done, after a backoff "+
			"(from a second up to a minute), until it succeeds", limit, since, ts.Err, ts.Holds)
	case ts.Holds > 0:
		return fmt.Sprintf("kept over %s since %s: %d reader(s) of the past (recover --at, a view of a past time as it opens) hold its old end; "+
			"trimmed once they are done", limit, since, ts.Holds)
	case ts.Err != nil:
		return fmt.Sprintf("kept over %s since %s: trimming it once the readers of the past that held its old end were done failed, and so did every try since (%v); "+
			"tried again after a backoff (from a second up to a minute) until it succeeds", limit, since, ts.Err)
	}
	return fmt.Sprintf("kept over %s since %s: being trimmed now that the readers of the past that held its old end are done", limit, since)
}

// Window is how far back RecoverTo reaches: the oldest point the history
// holds and the applied group, as groups and times. ok is false without
// history or before any group was applied.
func (s *Secondary) Window() (oldest, newest apply.State, ok bool) {
	st := s.Stats()
	if !st.History || st.HistoryOldest == 0 {
		return oldest, newest, false
	}
	d := s.appliedState()
	return apply.State{Group: st.HistoryOldestGroup, Time: st.HistoryOldest}, apply.State{Group: d.Group, Time: d.Time}, true
}

// RecoverTo takes every volume back to the newest point at or before t
// (Unix ns) that the history holds, an applied group or a step of one
// (historySteps), or a step of the group the volumes hold in part through
// a coupled Gate's limit (pointInPart), and records it as the applied
// group, as of the point's time; it returns that state. Only a fenced
// secondary that is not running (Open with nothing linked) may be taken
// back: the groups after it are gone from the volumes, and no primary may
// send more.
//
// Crash-safe: the undo writes the same bytes whatever the volumes hold
// when it starts, the state file names the group before the undo starts,
// and the history's undo of later groups is voided only once the volumes
// are flushed at it; after a crash, whatever opens the secondary next
// first finishes taking the volumes to that group (finishRecoverTo), so
// run again, the same t reaches the same group, and another never mixes
// two points.
func (s *Secondary) RecoverTo(t int64) (apply.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hist == nil {
		return apply.State{}, ErrNoHistory
	}
	if !s.fenced || s.unrecorded != nil {
		return apply.State{}, errors.New("secondary: recover to a time: the secondary must be fenced first")
	}
	if s.conn != nil {
		return apply.State{}, errors.New("secondary: recover to a time: a primary is linked")
	}
	if err := s.handedOver(); err != nil {
		return apply.State{}, err
	}
	s.waitApplied()
	cur := s.appliedState()
	at := history.Point{Group: cur.Group, Time: cur.Time}
	p, inPart := s.pointInPart(t, cur)
	s.posMu.Lock()
	partial := s.gated.partial
	s.posMu.Unlock()
	// outside refuses t, outside the window, before a byte of the part
	// of the next group the volumes may hold is undone: undone, a run
	// again could no longer reach a point of it. An undo an earlier run
	// left part-way, after its state file named cur, is still finished.
	outside := func() (apply.State, error) {
		if partial <= cur.Time && s.hist.Beyond(at) {
			if err := s.renameApplied(cur); err != nil {
				return apply.State{}, err
			}
			if err := s.undoTo(at); err != nil {
				return apply.State{}, err
			}
		}
		return apply.State{}, windowError(s.hist, t, cur)
	}
	if !inPart && t < cur.Time {
		var ok bool
		if p, ok = s.hist.At(t); !ok {
			return outside()
		}
	}
	// The undo after p is held from Trim before anything is undone, the
	// part of the next group the volumes may hold included, and before
	// the state file names p: a checkpoint's release retried on its timer
	// (retryRelease), which takes no lock of ours, would otherwise trim
	// the window's old end while it is read, p's undo with it once the
	// window has moved past p (or the history's files grew past MaxBytes
	// while the release was owed). Held after the part's undo, a trim
	// meanwhile refused the run as outside the window with the part
	// undone: the volumes changed by a run that reached no point, and one
	// again could no longer reach a point of the part. Held later still,
	// the state file named p over volumes never taken back to it, or
	// part-way. One trimmed before the hold is refused here, before
	// anything is written.
	var release func()
	if inPart || t < cur.Time {
		var err error
		if release, err = s.hist.Hold(p); err != nil {
			if errors.Is(err, history.ErrOutside) {
				return outside()
			}
			return apply.State{}, fmt.Errorf("secondary: %w", err)
		}
	}
	named := false
	defer func() {
		if !named && release != nil {
			release()
		}
	}()
	if !inPart && s.hist.Beyond(at) {
		// The undo of a group (or step) after the applied one is held: an
		// earlier RecoverTo recorded its point and was stopped before it
		// voided the undo of the later ones, in this process (Open
		// finishes one stopped by a crash), or the volumes hold part of
		// the next group, applied through a coupled Gate's limit before
		// a fence or a stop (a fenced secondary applies no more of it).
		// Undoing writes the volumes' bytes as of cur in either case.
		//
		// The state file names cur first, where an earlier run's failed
		// write may have named a point of its own (restate): the undo
		// after cur voided, a kill before this run's state write left
		// the state file naming that point (one of the part, say) over
		// volumes at cur, with nothing left to take them there.
		if err := s.renameApplied(cur); err != nil {
			return apply.State{}, err
		}
		if s.ident.FencedPart != 0 {
			// A restart would take the volumes for still at the part
			// the fence recorded, part-way back from it: it finishes
			// the undo instead (finishRecoverTo).
			id := s.ident
			id.FencedPart = 0
			if err := s.setIdentity(id); err != nil {
				return apply.State{}, fmt.Errorf("secondary: recover to a time: %w", err)
			}
		}
		// From the undo's first write the volumes are off the part,
		// whatever becomes of it (undoTo): a run again in this process
		// finishes taking them to cur first, as a restart does (the
		// identity says no part), rather than reach a point of the part
		// over bytes of it undone.
		if err := s.undoTo(at); err != nil {
			if partial > cur.Time {
				// Part-way back from the part, the volumes are at no
				// point: the fence is no longer this run's to undo
				// (UndoFence). Undone, the primary was taken again
				// over volumes it holds for the part whole, and the
				// rest of the group applied over them left the bytes
				// undone under a group boundary they never held.
				s.prefence = nil
			}
			return apply.State{}, err
		}
	}
	if !inPart && t >= cur.Time {
		if err := s.renameApplied(cur); err != nil {
			return apply.State{}, err
		}
		return cur, nil
	}
	if s.testRecovering != nil {
		s.testRecovering(p)
	}
	st := apply.State{Session: s.cfg.Session, Group: p.Group, Time: p.Time, Through: cur.Through, Volumes: map[string]apply.VolumeState{},
		RecoveredFrom: max(cur.RecoveredFrom, s.journaled.Group, cur.Group), HistoryUnkept: s.unkept}
	if len(p.State) > 0 {
		if err := json.Unmarshal(p.State, &st.Volumes); err != nil {
			return apply.State{}, fmt.Errorf("secondary: history of group %d: pair states: %w", p.Group, err)
		}
	} else {
		for name := range cur.Volumes {
			st.Volumes[name] = apply.VolumeState{State: "duplex"}
		}
	}
	// A volume forgotten after p: the copy p's states name is no longer
	// the session's, and its image may since have been removed and made
	// anew, or written by a new pair's first copy the undo does not reach.
	st.Volumes, st.Forgotten = s.withoutForgottenLocked(p.Group, st.Volumes), s.forgotten
	// The state file names p before a byte is undone: a run stopped
	// part-way then finds the undo of what is after p held (Beyond) and
	// finishes taking the volumes to p first, whatever time it is asked
	// for. Named after the undo, the state would still say cur over
	// volumes part-way to p, and a run for a later time than p would
	// undo only what is after that time.
	//
	// Once the state file may name p, even by a write that failed (its
	// rename reached the directory, its fsync did not), p's undo is held
	// until the volumes are at p (undoTo), not only while this call
	// reads it: a failure part-way leaves them to the next open
	// (finishRecoverTo), and a release's retry before the stop, whose
	// keep is the group applied before, would trim what that reads.
	named = true
	s.holdRecovering(release)
	// The fence is no longer this run's to undo (UndoFence): the groups
	// after p, which the old primary had acknowledged, may be gone from
	// the volumes from here on.
	prefence := s.prefence
	s.prefence = nil
	// Written, and recorded as both the group the state file names and
	// the applied one, under the checkpoint's lock: a checkpoint (a
	// failed one's retry, on its timer) between the two records found
	// them apart and wrote the applied group it read, cur, over the state
	// file naming p, which a kill then left naming cur over volumes taken
	// back to p, the undo after p voided.
	s.ckMu.Lock()
	if err := apply.WriteStateFS(s.cfg.FS, s.cfg.StatePath, st); err != nil {
		if disk.Unreplaced(err) && !s.restate {
			// Failed before its rename, with no earlier run's write
			// that may have named a point of its own: the state file
			// names cur, the volumes are at it, and the fence is this
			// run's to undo as before. Refused, a failed promotion in
			// place would leave the primary cut off until a restart.
			s.prefence = prefence
			s.ckMu.Unlock()
			s.holdRecovering(nil)
			return apply.State{}, fmt.Errorf("secondary: recover to group %d: %w", p.Group, err)
		}
		// Its rename may have reached the directory: the state file may
		// name p over volumes still at cur, and the next open would take
		// them to p while this process says cur. Written again at cur by
		// the next checkpoint (Close's) or a run again that stays at cur
		// (renameApplied), unless a run again names a point of its own.
		s.restate = true
		s.ckMu.Unlock()
		return apply.State{}, fmt.Errorf("secondary: recover to group %d: %w", p.Group, err)
	}
	s.stateGroup, s.restate = st.Group, false
	if s.testRecorded != nil {
		s.testRecorded()
	}
	s.posMu.Lock()
	s.durable = st
	s.posMu.Unlock()
	s.ckMu.Unlock()
	s.pairs = newPairStates(st.Volumes)
	s.held = heldGroups{} // a resync the recovery undid holds nothing
	s.journaled = position{Group: st.Group, Time: st.Time, Through: maps(st.Through)}
	// The applier was handed nothing after cur (waitApplied) and is
	// handed nothing more while fenced: the last group handed to it is
	// now the one the volumes are taken to, as Open would have it. Left
	// at cur, the next RecoverTo or UndoRanges in this process, a retry
	// of this one that fails below included, would wait for ever for the
	// applier to reach a group the volumes are no longer at.
	s.queued = position{Group: st.Group, Time: st.Time, Through: maps(st.Through)}
	if err := s.undoTo(p); err != nil {
		return apply.State{}, err
	}
	s.log.Warn("recovered to a past group: the volumes hold it, and the groups after it are gone from them",
		"group", st.Group, "consistency_time", fmtTime(st.Time), "was_group", cur.Group)
	return st, nil
}

// renameApplied makes the state file name cur, the applied group, where an
// earlier RecoverTo's failed write may have named its point (restate):
// reporting cur over a state file that names another point, the next open
// would take the volumes there. Once it does, that point's undo is no
// longer held for the next open. Called with s.mu held.
func (s *Secondary) renameApplied(cur apply.State) error {
	s.ckMu.Lock()
	if !s.restate {
		s.ckMu.Unlock()
		return nil
	}
	recorded, err := s.checkpointRecording()
	s.ckMu.Unlock()
	if !recorded {
		return fmt.Errorf("secondary: recover to group %d: an earlier run's state file write failed, and writing it again: %w", cur.Group, err)
	}
	if err != nil {
		// The state file names cur: only the journal's space waits,
		// its release retried (owedLocked).
		s.log.Warn(releaseFailed("the applied group a recover --at stays at"), "err", err)
	}
	s.holdRecovering(nil)
	return nil
}

// undoTo writes the volumes back to p from the history's undo, under the
// volumes' lock so that no view reads them part-way, and then voids the
// undo after p, which the volumes no longer hold.
//
// The volumes are off the part of the next group they held through a
// coupled Gate's limit from the undo's first write, whether it fails or
// not: a run again in this process, whatever time it is for (one outside
// the window included), then finds the undo after the state file's point
// unfinished, and finishes it before anything else, as a restart does.
// Left set after a failure, status said the part whole over volumes
// part-way back from it, and a run refused as outside the window left
// them so.
func (s *Secondary) undoTo(p history.Point) error {
	s.view.Lock()
	s.posMu.Lock()
	s.gated.partial = 0
	s.posMu.Unlock()
	err := s.hist.Undo(p, s.undoSinks())
	s.view.Unlock()
	if err != nil {
		return fmt.Errorf("secondary: recover to group %d: %w", p.Group, err)
	}
	if err := s.hist.Void(p); err != nil {
		return fmt.Errorf("secondary: %w", err)
	}
	s.holdRecovering(nil)
	return nil
}

// holdRecovering replaces the hold of the point the state file names
// while the volumes may not be at it (release, nil once they are),
// releasing the one before. Called with s.mu held.
func (s *Secondary) holdRecovering(release func()) {
	if s.recovering != nil {
		s.recovering()
	}
	s.recovering = release
}

// pointInPart is the point RecoverTo(t) reaches inside the group after
// cur, the applied one, when the volumes hold it in part, through a
// coupled Gate's limit: the newest step of it at or before both t and the
// limit. Its undo was captured whole before its first part was applied,
// so undoing the steps after the point leaves the volumes at it; undoing
// the whole group would reach the group before, however long ago. ok is
// false when the volumes hold no part of the next group, or t reaches no
// step of it. Called with s.mu held.
func (s *Secondary) pointInPart(t int64, cur apply.State) (history.Point, bool) {
	s.posMu.Lock()
	partial := s.gated.partial
	s.posMu.Unlock()
	return s.stepInPart(t, cur, partial)
}

// stepInPart is pointInPart for the volumes applied through partial.
func (s *Secondary) stepInPart(t int64, cur apply.State, partial int64) (history.Point, bool) {
	if partial <= cur.Time {
		return history.Point{}, false
	}
	p, ok := s.hist.At(min(t, partial))
	return p, ok && p.Group == cur.Group+1
}

// UndoRanges are the ranges RecoverTo(t) writes back: those the groups
// after the one it reaches overwrote, and those of a group after the
// applied one whose undo is held (RecoverTo undoes them too); and, when it
// goes back before the applied group, those of the groups journaled after
// the applied one and never applied (a resync held them), which RecoverTo
// drops. Asked before RecoverTo, they are what the volumes will hold other
// than the primary did: the primary's activity log let the held groups'
// regions go once they were journaled here.
func (s *Secondary) UndoRanges(t int64) ([]history.Range, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hist == nil {
		return nil, ErrNoHistory
	}
	if err := s.handedOver(); err != nil {
		return nil, err
	}
	s.waitApplied()
	cur := s.appliedState()
	to := history.Point{Group: cur.Group, Time: cur.Time}
	p, inPart := s.pointInPart(t, cur)
	switch {
	case inPart:
		to = p
	case t < cur.Time:
		var ok bool
		if p, ok = s.hist.At(t); !ok {
			return nil, windowError(s.hist, t, cur)
		}
		to = p
	}
	// Held while read, as RecoverTo holds it (a release retried on its
	// timer may trim the window's old end meanwhile): a time the history
	// reached when asked is not refused as outside it.
	release, err := s.hist.Hold(to)
	if err != nil {
		if errors.Is(err, history.ErrOutside) {
			return nil, windowError(s.hist, t, cur)
		}
		return nil, fmt.Errorf("secondary: %w", err)
	}
	defer release()
	if s.testRecovering != nil {
		s.testRecovering(to)
	}
	rs, err := s.hist.Ranges(to)
	if err != nil {
		return nil, fmt.Errorf("secondary: %w", err)
	}
	if t < cur.Time || inPart {
		held, err := s.heldRanges(cur)
		if err != nil {
			return nil, err
		}
		rs = append(rs, held...)
	}
	return rs, nil
}

// heldRanges are the ranges of the groups journaled after cur, the applied
// group, and not undone by an earlier recovery (Open skips those too).
// Called with s.mu held.
func (s *Secondary) heldRanges(cur apply.State) ([]history.Range, error) {
	var rs []history.Range
	err := s.journal.Replay(cur.Group, func(index uint64, data []byte) error {
		if s.ident.Fenced != "" && index <= cur.RecoveredFrom {
			return nil
		}
		g, err := s.decodeJournaled(index, data)
		if err != nil {
			return err
		}
		for _, u := range g.Updates {
			if u.Kind != recordset.KindMarker && u.Length > 0 {
				rs = append(rs, history.Range{Volume: u.Volume, Offset: u.Offset, Length: u.Length})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("secondary: the groups journaled after applied group %d: %w", cur.Group, err)
	}
	return rs, nil
}

// windowError says that t is before the oldest point of the history h, and
// what h holds, cur being the applied group.
func windowError(h *history.Log, t int64, cur apply.State) error {
	oldest := cur
	if o, ok := h.Oldest(); ok {
		oldest = apply.State{Group: o.Group, Time: o.Time}
	}
	return fmt.Errorf("%w: %s is before the oldest recoverable time; the history holds %s (group %d) to %s (group %d)",
		ErrOutsideWindow, fmtTime(t), fmtTime(oldest.Time), oldest.Group, fmtTime(cur.Time), cur.Group)
}

// handedOver refuses a secondary whose fence was not recover --at's: its
// volumes were usable since, and may hold writes no undo takes back.
// Called with s.mu held.
func (s *Secondary) handedOver() error {
	if s.ident.Fenced == "" || s.ident.RecoverAt {
		return nil
	}
	return fmt.Errorf("%w: the secondary was fenced at %s by recover (or a promotion), which made its volumes usable: "+
		"they may have been written since, and the history holds no before image of those writes, so going back in time "+
		"would mix them with the past groups; recover --at takes back only a secondary it fenced itself", ErrHandedOver, s.ident.Fenced)
}

func fmtTime(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }
