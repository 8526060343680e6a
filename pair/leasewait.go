package pair

import (
	"sync"
	"time"

	"duplex/recordset"
)

// The session's own changes of its pairs (a suspension for a failed
// write, for a copy the mover gave up or for the link, its resume on the
// link's return, a copy's end) stamp their markers holding mg.mu, as the
// operator's do. With the common timer's lease on a disk that stopped
// answering, a stamp waits for the lease's write without bound, and so
// would mg.mu, every operator's command behind it, and the manager's
// loop the stop waits for. Each is made, as the operator's are, within
// SaveWait, and otherwise put off, the pair left as it was, and made
// again once the lease is written: while the lease's write is known hung
// (leaseHung) it is not even tried, so that mg.mu is not taken for a
// stamp that cannot come. Nothing is lost meanwhile: no write is
// acknowledged while its stamp waits for the lease, and what the change
// is owed (a failed write, a copy given up, a copy's end, a crash
// recovery's end) is kept until it is made. The markers of pairs whose
// writes are not captured (announced again after the session's drop, a
// deletion's) wait for their stamps on their own instead (see
// announceWithin), and the operator's commands that would mark those
// pairs after them wait for them only as long.

// leaseWatcher is what a subsystem offers to tell whether its stamps wait
// for the timer's lease (package subsystem implements it).
type leaseWatcher interface {
	LeaseHung(wait time.Duration) error
}

// leaseGiver is what a subsystem offers to tell whether the stop gave
// the timer's lease up (package subsystem implements it).
type leaseGiver interface {
	LeaseGivenUp() bool
}

// leaseGivenUp says whether the stop gave the timer's lease up: a stamp
// that waited for its write was then handed out with the write not
// ended.
func (mg *Manager) leaseGivenUp() bool {
	for _, name := range mg.order {
		if lg, ok := mg.vols[name].Subsystem.(leaseGiver); ok && lg.LeaseGivenUp() {
			return true
		}
	}
	return false
}

// boundedMark is what a subsystem offers to capture a marker in bounded
// time (package subsystem implements it), as boundedMarker.
type boundedMark interface {
	MarkWithin(vol string, m recordset.Marker, wait time.Duration) (int64, error)
}

// leaseHung returns the error of the first subsystem whose stamps wait
// for a write of the timer's lease that has taken SaveWait, nil if none.
// It takes no lock: the volumes and their subsystems are fixed at Open.
func (mg *Manager) leaseHung() error {
	for _, name := range mg.order {
		if lw, ok := mg.vols[name].Subsystem.(leaseWatcher); ok {
			if err := lw.LeaseHung(mg.operatorWait()); err != nil {
				return err
			}
		}
	}
	return nil
}

// leaseWaits records what the session's changes put off for the timer's
// lease, since when, for their log.
type leaseWaits struct {
	mu     sync.Mutex
	since  map[string]time.Time
	logged map[string]time.Time
}

// leaseWaitEvery is how often the log says again that a change waits.
const leaseWaitEvery = time.Minute

// putOff logs that the session's change what (of vol, "" for every pair)
// is put off for the timer's lease (err), the first time and once a
// minute after.
func (mg *Manager) putOff(what, vol string, err error) {
	lw := &mg.leaseWaits
	lw.mu.Lock()
	if lw.since == nil {
		lw.since, lw.logged = map[string]time.Time{}, map[string]time.Time{}
	}
	key := what + " " + vol
	now := time.Now()
	if _, ok := lw.since[key]; !ok {
		lw.since[key] = now
	}
	since, last := lw.since[key], lw.logged[key]
	log := now.Sub(last) >= leaseWaitEvery
	if log {
		lw.logged[key] = now
	}
	lw.mu.Unlock()
	if log {
		mg.log.Warn(what+" waits for the write of the timer's lease, which has not ended (its disk stopped answering): put off, the pair left as it was, "+
			"and made once the lease is written; the operator's commands and the status go on meanwhile",
			"volume", vol, "waiting", now.Sub(since).Round(time.Millisecond), "err", err)
	}
}

// madeAfterWait logs that the session's change what of vol, put off for
// the timer's lease, is made.
func (mg *Manager) madeAfterWait(what, vol string) {
	lw := &mg.leaseWaits
	lw.mu.Lock()
	key := what + " " + vol
	since, ok := lw.since[key]
	delete(lw.since, key)
	delete(lw.logged, key)
	lw.mu.Unlock()
	switch {
	case !ok:
	case mg.leaseGivenUp():
		mg.log.Warn(what+" made only once the stop had given up the write of the timer's lease, never written (the mark on disk, above every stamp "+
			"handed out before, stays): the stop went on without it", "volume", vol, "waited", time.Since(since).Round(time.Millisecond))
	default:
		mg.log.Info(what+" made, the timer's lease written", "volume", vol, "waited", time.Since(since).Round(time.Millisecond))
	}
}

// noLongerOwed logs that the session's change what of vol, put off for
// the timer's lease, is no longer to make (why): it is not said made.
func (mg *Manager) noLongerOwed(what, vol, why string) {
	lw := &mg.leaseWaits
	lw.mu.Lock()
	key := what + " " + vol
	since, ok := lw.since[key]
	delete(lw.since, key)
	delete(lw.logged, key)
	lw.mu.Unlock()
	if ok {
		mg.log.Info(what+", put off for the timer's lease, is no longer needed: "+why, "volume", vol, "waited", time.Since(since).Round(time.Millisecond))
	}
}
