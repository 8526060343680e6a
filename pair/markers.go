package pair

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"duplex/bitmap"
	"duplex/journal"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
)

// Pair-state markers tell the secondary, in the stream and in timestamp
// order with the writes, when a volume's copy begins and ends and when it is
// suspended or deleted. With them the secondary reports each volume's truth,
// and holds its volumes at the last consistent group while a resync of a
// volume that had a consistent copy runs. Each function here is called with
// mg.mu held (or before Run) at one transition of pair.go.
//
// A marker is stamped under its subsystem's ordering lock, which a write
// holds while its stamp waits for the common timer's mark to reach disk
// (timer's lease, renewed in the background; a stamp waits only when a
// renewal's fsync outlasts half the lease). mg.mu is held over that wait:
// letting it go before the marker would split a pair's change from the
// point of the timer it takes effect at. A renewal that ends is waited
// for; one whose disk stopped answering is waited for only SaveWait by
// the operator's commands (refused then) and the session's own changes
// (put off then, see leasewait.go), so that nothing holds mg.mu for it
// without bound. Status does not wait (it reads the published states).

// Marker is what a subsystem offers to capture pair-state markers (package
// subsystem implements it). A subsystem without it sends no markers: the
// secondary then takes its volumes as duplex throughout, as before markers.
type Marker interface {
	Mark(vol string, m recordset.Marker) (int64, error)
	SuspendMarked(vol string, bm *bitmap.Bitmap, m recordset.Marker) (int64, error)
	ResumeMarked(vol string, m recordset.Marker) (*bitmap.Bitmap, int64, error)
}

func (mg *Manager) marker(vol string) Marker {
	m, _ := mg.vols[vol].Subsystem.(Marker)
	return m
}

func (mg *Manager) markerFailed(vol string, s recordset.PairState, err error) {
	mg.log.Error("pair-state marker not sent", "volume", vol, "state", s, "err", err)
}

// mark captures m for vol. At the start (opening), its stamp is waited
// for only as an operator's command's is, and given up, the start fails
// (see startFailed): once one is, the start captures no other.
func (mg *Manager) mark(vol string, m recordset.Marker) (int64, bool) {
	mk := mg.marker(vol)
	if mk == nil {
		return 0, false
	}
	var ts int64
	var err error
	if bmk, ok := mk.(boundedMark); ok && mg.opening {
		if mg.startHung != nil {
			return 0, false
		}
		if ts, err = bmk.MarkWithin(vol, m, mg.operatorWait()); leaseHung(err) {
			mg.startHung = fmt.Errorf("the %s marker of %s: %w", m.State, vol, err)
			return 0, false
		}
	} else {
		ts, err = mk.Mark(vol, m)
	}
	if err != nil {
		mg.markerFailed(vol, m.State, err)
		return 0, false
	}
	return ts, true
}

// markFirstCopy announces the very first copy of p: the secondary has no
// consistent copy of it until the copy ends, and does not hold the others.
func (mg *Manager) markFirstCopy(p *Pair) {
	mg.mark(p.Volume, recordset.Marker{State: recordset.StateFirstCopy, Bytes: uint64(p.CopyTotal)})
	mg.endIfEmpty(p)
}

// markResync announces a copy over a secondary copy that may have been
// consistent: the secondary holds its volumes until the copy ends, unless
// the operator accepted an inconsistent resync.
func (mg *Manager) markResync(p *Pair) {
	mg.mark(p.Volume, recordset.Marker{State: recordset.StateResync, Bytes: uint64(p.CopyTotal), Inconsistent: mg.takeInconsistent(p.Volume) || resyncUnended(p)})
	mg.endIfEmpty(p)
}

// markCopy announces the copy p starts: its first copy again if it never
// completed one, a resync otherwise.
func (mg *Manager) markCopy(p *Pair) {
	if p.FirstCopy {
		mg.markFirstCopy(p)
		return
	}
	mg.markResync(p)
}

// endIfEmpty ends at once, after its begin marker, a copy with nothing to
// copy: no copy update will ever reach copied to end it. An end put off
// for the timer's lease is stamped later (see endCopies).
func (mg *Manager) endIfEmpty(p *Pair) {
	if mg.startHung != nil || !copyEndOwed(p, mg.copies[p.Volume]) {
		return
	}
	mg.endCopy(p)
}

// copyEndOwed says whether p, pending with its copy bm, has copied every
// region and its end is not stamped yet.
func copyEndOwed(p *Pair, bm *bitmap.Bitmap) bool {
	return p.State == Pending && bm != nil && bm.Count() == 0 && p.CopyEnd == 0
}

// endCopy stamps the end of p's copy, every region of it captured (see
// markCopyEnd): p is duplex once the secondary has it. Put off for the
// timer's lease, p stays pending, its end not stamped, and endCopies
// stamps it once the lease is written: the later stamp is still after
// every update of the copy (see markCopyEnd), and a write captured
// meanwhile ships as any other. It reports whether the end was stamped.
// Called with mg.mu held.
func (mg *Manager) endCopy(p *Pair) bool {
	ts, err := mg.markCopyEndWithin(p, mg.vols[p.Volume].Subsystem, mg.operatorWait())
	if err != nil {
		mg.putOff("the end of the copy", p.Volume, err)
		return false
	}
	p.CopyEnd = ts
	mg.firstCopyEnded(p)
	mg.madeAfterWait("the end of the copy", p.Volume)
	return true
}

// endCopies stamps the ends of the copies that copied every region and
// whose end was put off for the timer's lease (see endCopy), once the
// lease is no longer known hung.
func (mg *Manager) endCopies() {
	mg.mu.Lock()
	var owed []*Pair
	if len(mg.copies) > 0 {
		// Only a pair with a copy may owe its end.
		for _, name := range mg.order {
			if p := mg.pairs[name]; copyEndOwed(p, mg.copies[name]) {
				owed = append(owed, p)
			}
		}
	}
	recoveries := mg.recoveriesOwed()
	if len(owed) == 0 && len(recoveries) == 0 {
		mg.unlockUnchanged()
		return
	}
	defer mg.unlock()
	if err := mg.leaseHung(); err != nil {
		for _, p := range owed {
			mg.putOff("the end of the copy", p.Volume, err)
		}
		for _, p := range recoveries {
			mg.putOff("the end of the crash recovery", p.Volume, err)
		}
		return
	}
	for _, p := range owed {
		if !mg.endCopy(p) {
			return
		}
		mg.dirty = true
		mg.changes++
	}
	// And the ends of crash recoveries put off at the start (see
	// endRecovery).
	for _, p := range recoveries {
		end := mg.endRecovery(p)
		mg.recovering[p.Volume] = end
		if end == recoveryEndOwed {
			return
		}
	}
}

// markCopyEnd announces that every copy update of p's copy is captured, and
// returns its timestamp: the pair is duplex once the secondary has it.
func (mg *Manager) markCopyEnd(p *Pair, ss Subsystem) int64 {
	ts, _ := mg.markCopyEndWithin(p, ss, -1)
	return ts
}

// markCopyEndWithin is markCopyEnd given up for the timer's lease (wait
// not negative, see boundedMark): nothing is announced, and the error is
// returned. The end is stamped after every update of the copy: each was
// captured, stamped, before the copy read its region, and the copy had
// read every one before its end is marked; so it is later than every
// write whose data the copy read, each stamped before it reached the
// volume.
func (mg *Manager) markCopyEndWithin(p *Pair, ss Subsystem, wait time.Duration) (int64, error) {
	m := recordset.Marker{State: recordset.StateCopyEnd}
	if bmk, ok := mg.vols[p.Volume].Subsystem.(boundedMark); ok && wait >= 0 {
		ts, err := bmk.MarkWithin(p.Volume, m, wait)
		if err == nil {
			return ts, nil
		}
		if leaseHung(err) {
			return 0, err
		}
		mg.markerFailed(p.Volume, m.State, err)
		return stampWithin(ss, wait)
	}
	if ts, ok := mg.mark(p.Volume, m); ok {
		return ts, nil
	}
	return stampWithin(ss, wait)
}

// boundedStamp is what a subsystem offers to stamp in bounded time
// (package subsystem implements it), as boundedMarker.
type boundedStamp interface {
	StampWithin(wait time.Duration) (int64, error)
}

// stampWithin is ss.Stamp, the stamp a change takes in its marker's stead
// (a marker that failed), given up for the timer's lease as its marker
// would be (wait not negative, see boundedMarker): holding mg.mu, the
// stamp would wait for the lease's disk without bound.
func stampWithin(ss Subsystem, wait time.Duration) (int64, error) {
	if bs, ok := ss.(boundedStamp); ok && wait >= 0 {
		return bs.StampWithin(wait)
	}
	return ss.Stamp(), nil
}

// suspendMarked stops capturing vol's writes (they go to bm) and announces
// it in the same critical section. It returns the time of the suspension:
// the marker's timestamp, before every write of vol tracked in bm and after
// every one captured; without a marker, a stamp taken once the writes go to
// bm, which the secondary takes as duplex throughout anyway.
func (mg *Manager) suspendMarked(vol string, bm *bitmap.Bitmap) int64 {
	ts, _ := mg.suspendMarkedWithin(vol, bm, -1)
	return ts
}

// boundedMarker is what a subsystem offers to capture an operator's
// markers in bounded time (package subsystem implements it): a stamp
// held up by the write of the common timer's lease is waited for only
// until that write has taken wait, and the change is then not made, the
// error a timer.LeaseHungError.
type boundedMarker interface {
	SuspendMarkedWithin(vol string, bm *bitmap.Bitmap, m recordset.Marker, wait time.Duration) (int64, error)
	ResumeMarkedWithin(vol string, m recordset.Marker, wait time.Duration) (*bitmap.Bitmap, int64, error)
}

// operatorWait is how long an operator's command waits for the disk of
// the state directory, a save of the pair state or the timer's lease
// that its marker's stamp waits for: Options.SaveWait.
func (mg *Manager) operatorWait() time.Duration {
	return cmp.Or(mg.opts.SaveWait, DefaultSaveWait)
}

// leaseHung says whether err is a marker given up for the timer's lease
// (see boundedMarker): the change was not made.
func leaseHung(err error) bool {
	var lh *timer.LeaseHungError
	return errors.As(err, &lh)
}

// suspendMarkedWithin is suspendMarked for an operator's command (wait
// not negative): a marker given up for the timer's lease (see
// boundedMarker) suspends nothing, and its error is returned.
func (mg *Manager) suspendMarkedWithin(vol string, bm *bitmap.Bitmap, wait time.Duration) (int64, error) {
	if mk := mg.marker(vol); mk != nil {
		m := recordset.Marker{State: recordset.StateSuspended}
		var ts int64
		var err error
		if bmk, ok := mk.(boundedMarker); ok && wait >= 0 {
			ts, err = bmk.SuspendMarkedWithin(vol, bm, m, wait)
		} else {
			ts, err = mk.SuspendMarked(vol, bm, m)
		}
		if err == nil {
			return ts, nil
		}
		if leaseHung(err) {
			return 0, err
		}
		mg.markerFailed(vol, recordset.StateSuspended, err)
	}
	ss := mg.vols[vol].Subsystem
	ss.Suspend(vol, bm)
	return ss.Stamp(), nil
}

// resumeMarked captures vol's writes again and announces the copy before
// any of them, returning the regions changed while suspended. A pair whose
// first copy never completed announces its first copy again, not a resync:
// the secondary has no consistent copy of it to hold the others for. bytes,
// if not 0, is what the copy will send (else the regions changed).
func (mg *Manager) resumeMarked(p *Pair, bytes uint64) *bitmap.Bitmap {
	bm, _ := mg.resumeMarkedWithin(p, bytes, -1)
	return bm
}

// resumeMarkedWithin is resumeMarked for an operator's command (wait not
// negative): a marker given up for the timer's lease (see boundedMarker)
// resumes nothing, and its error is returned; the operator's acceptance
// of an inconsistent resync stays for the next resume.
func (mg *Manager) resumeMarkedWithin(p *Pair, bytes uint64, wait time.Duration) (*bitmap.Bitmap, error) {
	vol := p.Volume
	if mk := mg.marker(vol); mk != nil {
		m := recordset.Marker{State: recordset.StateResync, Inconsistent: mg.markers.inconsistent[vol] || resyncUnended(p)}
		if mg.inFirstCopy(p) {
			m = recordset.Marker{State: recordset.StateFirstCopy}
		}
		m.Bytes = bytes
		var bm *bitmap.Bitmap
		var err error
		if bmk, ok := mk.(boundedMarker); ok && wait >= 0 {
			bm, _, err = bmk.ResumeMarkedWithin(vol, m, wait)
		} else {
			bm, _, err = mk.ResumeMarked(vol, m)
		}
		if leaseHung(err) {
			return nil, err
		}
		mg.takeInconsistent(vol) // the marker's, taken or failed
		if err == nil {
			return bm, nil
		}
		mg.markerFailed(vol, m.State, err)
	}
	return mg.vols[vol].Subsystem.Resume(vol), nil
}

// reannounce captures again the marker of p's current state if it is one
// a lost marker would leave the secondary mistaken about: markers live only
// in the sidefile, so a drop of what the mover holds, or a restart, loses
// them. Called with p's writes not captured (suspended or deleted) or before
// any I/O is served, so no write of p comes between the lost marker's place
// and this one's: the secondary then takes the copy as of the last group it
// has before this marker, which is what it holds.
func (mg *Manager) reannounce(p *Pair) {
	for _, m := range announcement(p) {
		mg.mark(p.Volume, m)
	}
}

// announcement returns the markers reannounce captures for p.
func announcement(p *Pair) []recordset.Marker {
	switch {
	case p.Deleted:
		return []recordset.Marker{{State: recordset.StateDeleted}}
	case p.State == Suspended && p.FirstCopy:
		return []recordset.Marker{{State: recordset.StateFirstCopy, Bytes: uint64(p.CopyTotal)}, {State: recordset.StateSuspended}}
	case p.State == Suspended:
		return []recordset.Marker{{State: recordset.StateSuspended}}
	}
	return nil
}

// volMarker is a marker to capture for a volume.
type volMarker struct {
	vol string
	m   recordset.Marker
}

// reannounceWithin captures ms, the markers of the pairs the session's
// suspension announces again after its drop (see reannounce), waiting
// for their stamps, as a write does, until they are captured or the
// write of the timer's lease is known hung (wait not negative). They are
// captured apart from mg.mu, on their own: a stamp that waits for a hung
// lease is put off, not given up, and the markers are captured as soon
// as the lease is written; what captures a marker of one of these pairs
// later (a resume, an add, a deletion) waits for them first (see
// announcedWithin). Their place in the stream is kept by the mover's
// cuts held until they are captured (release, see mover.HoldCuts), not
// by their stamps: the cut that waits for the lease beside them may take
// its stamp first, and a group it formed would reach the secondary
// before them. Called with mg.mu held.
func (mg *Manager) reannounceWithin(ms []volMarker, wait time.Duration, release func()) {
	mg.announceWithin("the markers of the session's suspension, announced again after its drop,", ms, wait, release)
}

// announceWithin captures ms as reannounceWithin does, what naming them
// in the log when put off: the markers of pairs whose writes are not
// captured (suspended or deleted). release, if set, is called once they
// are. Called with mg.mu held.
func (mg *Manager) announceWithin(what string, ms []volMarker, wait time.Duration, release func()) {
	if release == nil {
		release = func() {}
	}
	if len(ms) == 0 {
		release()
		return
	}
	prev, done := mg.announcing, make(chan struct{})
	go func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		for _, vm := range ms {
			mg.mark(vm.vol, vm.m)
		}
		release()
	}()
	mg.announcing = done
	err := mg.stampedWithin(done, wait)
	if err == nil {
		mg.announcing = nil
		return
	}
	mg.putOff(what, "", err)
	go func() {
		<-done
		mg.mu.Lock()
		if mg.announcing == done {
			mg.announcing = nil
		}
		mg.unlock()
		mg.madeAfterWait(what, "")
	}()
}

// announcedWithin waits for the markers announceWithin put off (those
// the session's suspension announces again, a deletion's) to be
// captured, before an
// operator's command captures a marker of its own that must come after
// them, as long as stampedWithin does: it returns the timer's lease's
// error if they still wait for it. Called with mg.mu held.
func (mg *Manager) announcedWithin(wait time.Duration) error {
	if mg.announcing == nil {
		return nil
	}
	return mg.stampedWithin(mg.announcing, wait)
}

// announcedBeforeSave is announcedWithin for an operator's resume, which
// takes saveMu before mg.mu: called with dropMu held but neither of
// those, before it waits for a save under way. Markers put off for a hung lease refuse the
// resume once it holds both anyway; behind a slow save (a loaded disk's
// fsyncs past half of SaveWait) it would be answered "not yet in effect,
// once the save ends" instead (see answerWithin), and then, as likely as
// not, refused for the lease, the pair left suspended, the operator told
// otherwise. vol, if not "", is the pair resumed: one that is not a
// suspended pair (unknown, deleted, not suspended, its rejoin owed) is
// refused here too, as resume's checks under both locks refuse it, for
// the same reason: answered "not yet in effect" behind a slow save, it
// would be refused once the save ended. A deleted one whose deletion's
// marker (or the session's markers) waits for the lease says so.
func (mg *Manager) announcedBeforeSave(vol string, wait time.Duration) error {
	mg.mu.Lock()
	announcing := mg.announcing
	var refused error
	if vol != "" {
		p, err := mg.pair(vol)
		switch {
		case err != nil:
			refused = err
		case p.Deleted || p.State != Suspended:
			refused = notSuspended(p)
		case p.RejoinOwed:
			refused = rejoinOwed(vol)
		}
	}
	mg.unlock()
	if refused != nil {
		if announcing != nil && !ended(announcing) {
			if err := mg.leaseHung(); err != nil {
				return fmt.Errorf("%w; markers put off before this command (a deletion's, the session's) wait meanwhile for the timer's lease: %v", refused, err)
			}
		}
		return refused
	}
	if announcing == nil || wait < 0 {
		return nil
	}
	return mg.stampedWithin(announcing, wait)
}

// notSuspended is the refusal of a resume of p, which is not a suspended
// pair.
func notSuspended(p *Pair) error {
	if p.Deleted {
		return fmt.Errorf("%s is not suspended (deleted: pair add makes it a pair again)", p.Volume)
	}
	return fmt.Errorf("%s is not suspended (%s)", p.Volume, p.State)
}

// ended reports whether ch is closed.
func ended(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// stampedWithin waits for done, the end of a capture whose stamps may
// wait for the timer's lease, as long as it takes (wait negative), or
// until the write of the lease is known hung (see leaseHung), and then
// returns that error. Held by anything else, it is waited for as before.
func (mg *Manager) stampedWithin(done <-chan struct{}, wait time.Duration) error {
	if wait < 0 {
		<-done
		return nil
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-tick.C:
		}
		if err := mg.leaseHung(); err != nil {
			select {
			case <-done:
				return nil
			default:
			}
			return err
		}
	}
}

// markerState is the manager's state for markers and journal room.
type markerState struct {
	inconsistent map[string]bool      // resumes the operator accepted as inconsistent
	refusedAt    map[string]time.Time // last logged refusal of an automatic resume
}

// takeInconsistent reports, once, whether the operator accepted an
// inconsistent resync of vol (see ResumeInconsistent). The acceptance
// outlives the call in p.Inconsistent (see resyncUnended).
func (mg *Manager) takeInconsistent(vol string) bool {
	if !mg.markers.inconsistent[vol] {
		return false
	}
	delete(mg.markers.inconsistent, vol)
	return true
}

// ResumeInconsistent resumes vol, accepting that its secondary copy is not
// consistent until the resync completes: the secondary does not hold its
// volumes for it, so the resync needs no journal room beyond the usual.
func (mg *Manager) ResumeInconsistent(vol string) error {
	mg.mu.Lock()
	if mg.markers.inconsistent == nil {
		mg.markers.inconsistent = map[string]bool{}
	}
	mg.markers.inconsistent[vol] = true
	mg.unlock()
	err := mg.Resume(vol)
	if err != nil {
		mg.mu.Lock()
		delete(mg.markers.inconsistent, vol)
		mg.unlock()
	}
	return err
}

// resyncUnended reports whether p's secondary copy is not consistent until a
// copy of p ends, and no end of one is captured: a resync accepted as
// inconsistent (or one the secondary gave up holding) that has not ended.
// A copy of p announced now is that resync, resumed, and is announced
// inconsistent again: the marker that announced it may never have reached
// the secondary (dropped with what the mover held by the session's own
// suspension, or dead in the sidefile with the process), which then still
// holds the copy it had. Announced plain, the resync would have the
// secondary hold the other volumes for a pair the primary already reports
// inconsistent, the journal room the operator chose not to need checked
// after all, and the session's own resume of it refused while that room
// lacks. So the operator's choice stands until the resync it accepted ends,
// whatever resumes it: the session, a restart, or a plain resume (which
// cannot make the copy consistent sooner: the primary names no time it is
// consistent as of). Called with mg.mu held, before startCopy of the copy
// announced, or after it (Open, recover) where the copy is done again
// anyway: an end captured then means nothing to copy.
func resyncUnended(p *Pair) bool {
	return p.Inconsistent && p.CopyEnd == 0 && !p.Deleted
}

// ErrNoJournalRoom means a resync would not fit in the secondary's journal.
var ErrNoJournalRoom = errors.New("not enough journal space at the secondary for a consistent resync")

// errRoomUnknown means the secondary has not reported its journal room to
// this run: the link has not been up since the primary started.
var errRoomUnknown = errors.New("the secondary has not reported its journal room since the primary started")

// reasonAwaitingRoom is why a pair the operator resumed before the
// secondary reported its journal room stays suspended (see awaitRoom).
const reasonAwaitingRoom = "resume asked before the secondary reported its journal room (no link since the primary started): " +
	"the resync starts once the link is up and its room is checked"

// awaitRoom holds the resume of ps, asked before the secondary reported its
// journal room, until it has: they stay suspended, and resume by themselves
// once the link is up, as the session's own suspensions do (autoResume),
// with their room checked then; refused then, they stay suspended, saying
// why, and are tried again. A suspend asked meanwhile makes them the
// operator's again. Called with mg.mu held.
func (mg *Manager) awaitRoom(ps ...*Pair) {
	for _, p := range ps {
		p.Auto, p.Reason = true, reasonAwaitingRoom
	}
	mg.dirty = true
	mg.changes++
}

// roomFor is the journal a consistent resync holds at the secondary, in
// bytes of journal records: while it runs the secondary journals every group
// and releases none, so the journal grows by the copy, the writes made
// meanwhile, and what was already captured when it began. What the journal
// needs otherwise (its active segment and the one before it, two of the
// largest groups) journal.Open checked at the secondary's start, and segments
// are written as they fill, never allocated ahead, so the file system's free
// space is what the hold can grow into.
//
//   - the copy: the bytes to copy, each region one update of its data plus
//     sidefile.EntryOverhead (an update's header in the record is smaller);
//   - the writes made while it runs: a quarter of the copy (the copy and the
//     application's writes share the sidefile and the link, and pacing
//     slows the writes as the sidefile fills);
//   - the sidefiles' limits: what was captured before the resync began, and
//     the group that closes it, both journaled into the hold.
//
// Counted as the journal lays the records on its disk (journal.RecordSpace),
// which is how the secondary counts its room when it decides to give a
// hold up: a group of more than 64 KiB may have gaps, up to 6.3 % more
// than its data.
func (mg *Manager) roomFor(copyBytes int64, regions int) int64 {
	copied := copyBytes + int64(regions)*sidefile.EntryOverhead
	var sidefiles int64
	seen := map[string]bool{}
	for _, name := range mg.order {
		if ss := mg.vols[name].Subsystem; !seen[ss.ID()] {
			seen[ss.ID()] = true
			sidefiles += ss.Sidefile().Stats().Limit
		}
	}
	return journal.RecordSpace(copied + copied/4 + sidefiles)
}

// checkRoom refuses to start the consistent resyncs of ps that the
// secondary's journal file system cannot hold: the secondary journals every
// group of the resyncs before it applies any, and resyncs started together
// (resume --all) share one hold, so their room is counted together, once.
// Called with mg.mu held.
func (mg *Manager) checkRoom(ps ...*Pair) error {
	var held []*Pair
	pos := mg.mover.Stats().Acked
	for _, p := range ps {
		if mg.needsNoRoom(p, pos) {
			p.Waiting = ""
			continue
		}
		held = append(held, p)
	}
	if len(held) == 0 {
		return nil
	}
	ms := mg.mover.Stats()
	if !ms.Connected && ms.JournalFreeAt.IsZero() {
		// The secondary has reported no room to this run (the primary
		// restarted, and the link has not been up since): the resync
		// waits for the report rather than start on a room nobody knows.
		for _, p := range held {
			p.Waiting = noteRoomUnknown
		}
		return errRoomUnknown
	}
	free := ms.Acked.JournalFree
	if free == 0 {
		// Reported, but unknown there too (its statfs failed): the
		// secondary gives the hold up, and says so, should its journal
		// run short.
		return nil
	}
	var bytes int64
	regions := 0
	vols := make([]string, len(held))
	for i, p := range held {
		vols[i] = p.Volume
		if bm := mg.vols[p.Volume].Subsystem.Tracking(p.Volume); bm != nil {
			bytes, regions = bytes+bm.DirtyBytes(), regions+bm.Count()
		}
	}
	for name, bm := range mg.copies {
		if q := mg.pairs[name]; q != nil && q.State == Pending && bm != nil {
			// Open resyncs hold the journal too.
			bytes, regions = bytes+bm.DirtyBytes(), regions+bm.Count()
		}
	}
	need := mg.roomFor(bytes, regions)
	if uint64(need) <= free {
		for _, p := range held {
			p.Waiting = ""
		}
		return nil
	}
	what, way := "the resync of "+vols[0], "free space there, or accept an inconsistent secondary copy until the resync completes with `duplex pair resume --inconsistent "+vols[0]+"`"
	if len(held) > 1 {
		what = "the resyncs of " + strings.Join(vols, ", ") + ", held together,"
		way = "free space there, resume them one at a time (each waits for room beside the resyncs already running), or accept an inconsistent secondary copy until its resync completes with `duplex pair resume --inconsistent VOLUME`"
	}
	// With the link down, the figure is the secondary's last word, which
	// may no longer hold (it stopped on a full disk and was restarted
	// with space freed): the refusal says so rather than state it as the
	// room now. The resync is still refused, not started on an unknown
	// room: its marker would reach the secondary at link-up, its hold
	// beginning with nothing checked.
	has, asOf := "has room for", ""
	if !ms.Connected {
		age := "a while"
		if !ms.JournalFreeAt.IsZero() {
			age = time.Since(ms.JournalFreeAt).Round(time.Second).String()
		}
		has = "had room for"
		asOf = fmt.Sprintf(" when the link was last up, %s ago", age)
		way = "the link is down, so the secondary may have more room by now: resume again once the link is back (`duplex status`), " + way
	}
	for _, p := range held {
		p.Waiting = fmt.Sprintf("resync needs about %d bytes of journal at the secondary, %d free", need, free)
		if !ms.Connected {
			p.Waiting += asOf + " (link down)"
		}
	}
	return fmt.Errorf("%w: %s needs about %d bytes of journal at the secondary (%d bytes to copy, plus the writes during it and what the sidefiles hold), "+
		"but its journal %s %d bytes%s (its file system's free space less what the journal keeps for itself): %s",
		ErrNoJournalRoom, what, need, bytes, has, free, asOf, way)
}

// needsNoRoom reports whether a resume of p, suspended, holds nothing at the
// secondary, so its resync needs no journal room checked: a resync
// accepted as inconsistent (now, or before and not ended: announced so
// again), a first copy, or a resync over a copy the secondary holds
// consistent as of no time (it simply goes on, see
// secondary.pairStates.step); or nothing changed while suspended, the
// resync marker carrying no bytes, which the secondary takes as the
// primary's copy again at once, holding nothing (a hold still open from an
// earlier resync of p ends with the copy's end that follows). A write
// between this look and the marker makes it a resync that holds, without
// its room checked; the secondary gives the hold up should its journal run
// short, and says so. Called with mg.mu held.
func (mg *Manager) needsNoRoom(p *Pair, pos transport.Position) bool {
	if mg.markers.inconsistent[p.Volume] || resyncUnended(p) || mg.inFirstCopy(p) || heldInconsistent(p, pos) {
		return true
	}
	bm := mg.vols[p.Volume].Subsystem.Tracking(p.Volume)
	return bm != nil && bm.Count() == 0
}

// heldInconsistent reports whether the secondary holds p's copy consistent
// as of no time when a marker captured now reaches it: it said so, and no
// end of a copy of p is on the way to make it consistent again (the
// primary may not have taken p as inconsistent yet: see promote).
func heldInconsistent(p *Pair, pos transport.Position) bool {
	return slices.Contains(pos.Inconsistent, p.Volume) && p.CopyEnd <= pos.Time
}

// autoResume resumes the pairs the session suspended itself (ps, as they
// were when it looked), once the link is back: all together, at one point
// of the common timer, as it suspended them (resumeAll). One after another,
// a pair with nothing to copy would be the secondary's duplex copy again at
// once, holding nothing, and a write to it made after a write to a pair
// not yet resumed (only in that pair's bitmap) would reach the secondary
// before that pair's resync began to hold it: the secondary would hold the
// later write without the earlier one. Resyncs that do not fit the
// secondary's journal, held together, leave every pair suspended, tried
// again later; the refusal is logged once a minute.
//
// A resume that waits for the timer's lease is put off (see
// leasewait.go): not tried while the lease's write is known hung (its
// pending state would be saved, then saved suspended again), and the
// pairs stay suspended, resumed at a later look once the lease is
// written.
func (mg *Manager) autoResume(ps []*Pair) {
	if err := mg.leaseHung(); err != nil {
		mg.putOff("the session's resume on the link's return", "", err)
		return
	}
	names, err := mg.resumeAllWithin(true, mg.operatorWait())
	switch {
	case leaseHung(err):
		mg.putOff("the session's resume on the link's return", "", err)
		return
	case errors.Is(err, errRoomUnknown):
		// The link went down again before the secondary's word came:
		// tried again at the next link.
		return
	case errors.Is(err, ErrNoJournalRoom):
		var vols []string
		for _, p := range ps {
			vols = append(vols, p.Volume)
		}
		key := strings.Join(vols, ",")
		mg.mu.Lock()
		last := mg.markers.refusedAt[key]
		if time.Since(last) >= time.Minute {
			if mg.markers.refusedAt == nil {
				mg.markers.refusedAt = map[string]time.Time{}
			}
			mg.markers.refusedAt[key] = time.Now()
		}
		mg.unlock()
		if time.Since(last) >= time.Minute {
			mg.log.Warn("link is back, but the pairs stay suspended: retrying", "volumes", key, "err", err)
		}
		return
	case err != nil:
		mg.log.Warn("link is back, but the pairs do not resume", "volumes", names, "err", err)
		if len(names) == 0 {
			return
		}
	}
	mg.madeAfterWait("the session's resume on the link's return", "")
	reasons := map[string]string{}
	for _, p := range ps {
		reasons[p.Volume] = p.Reason
	}
	for _, vol := range names {
		mg.log.Info("link is back: resumed", "volume", vol, "suspended_because", reasons[vol])
	}
}

// suspendTogether suspends the pairs ps (with their change bitmaps bms) at
// one point of the common timer when their subsystems can do so together,
// one after another otherwise, and returns the time of each suspension (see
// suspendMarked): the same point for all when together.
//
// For an operator's command (wait not negative), markers given up for the
// timer's lease (see boundedMarker) suspend none of ps, and the error is
// returned. Subsystems that cannot change together are suspended one
// after another, each as long as it takes (none in a site).
func (mg *Manager) suspendTogether(ps []*Pair, bms []*bitmap.Bitmap, wait time.Duration) ([]int64, error) {
	at := make([]int64, len(ps))
	cs, ok := mg.togetherChanges(ps, recordset.Marker{State: recordset.StateSuspended})
	if ok {
		for i := range cs {
			cs[i].Bitmap = bms[i]
		}
		err := subsystem.SuspendTogetherWithin(cs, wait)
		if err == nil {
			for i := range at {
				at[i] = cs[len(cs)-1].Timestamp
			}
			return at, nil
		}
		if leaseHung(err) {
			return nil, err
		}
		mg.log.Error("pair-state markers not sent together", "err", err)
	}
	for i, p := range ps {
		at[i] = mg.suspendMarked(p.Volume, bms[i])
	}
	return at, nil
}

// resumeTogether resumes the pairs ps at one point of the common timer when
// their subsystems can do so together, returning the regions each changed
// while suspended. For an operator's command (wait not negative), markers
// given up for the timer's lease resume none of ps, as in
// suspendTogether, and the operator's acceptances of an inconsistent
// resync stay for the next resume.
func (mg *Manager) resumeTogether(ps []*Pair, wait time.Duration) ([]*bitmap.Bitmap, error) {
	bms := make([]*bitmap.Bitmap, len(ps))
	cs, ok := mg.togetherChanges(ps, recordset.Marker{State: recordset.StateResync})
	if ok {
		for i, p := range ps {
			if mg.inFirstCopy(p) {
				// As in resumeMarked: the first copy again, not a resync,
				// unless its end is already captured.
				cs[i].Marker = recordset.Marker{State: recordset.StateFirstCopy}
				continue
			}
			cs[i].Marker.Inconsistent = mg.markers.inconsistent[p.Volume] || resyncUnended(p)
		}
		err := subsystem.ResumeTogetherWithin(cs, wait)
		if leaseHung(err) {
			return nil, err
		}
		for _, p := range ps {
			if !mg.inFirstCopy(p) {
				mg.takeInconsistent(p.Volume) // the marker's, taken or failed
			}
		}
		if err == nil {
			for i := range cs {
				bms[i] = cs[i].Bitmap
			}
			return bms, nil
		}
		mg.log.Error("pair-state markers not sent together", "err", err)
	}
	for i, p := range ps {
		bms[i] = mg.resumeMarked(p, 0)
	}
	return bms, nil
}

// togetherChanges returns the changes of ps with marker m if every pair's
// subsystem is a subsystem.Subsystem (the only kind that changes together).
func (mg *Manager) togetherChanges(ps []*Pair, m recordset.Marker) ([]subsystem.Change, bool) {
	if len(ps) == 0 {
		return nil, false
	}
	cs := make([]subsystem.Change, len(ps))
	for i, p := range ps {
		s, ok := mg.vols[p.Volume].Subsystem.(*subsystem.Subsystem)
		if !ok {
			return nil, false
		}
		cs[i] = subsystem.Change{S: s, Vol: p.Volume, Marker: m}
	}
	return cs, true
}
