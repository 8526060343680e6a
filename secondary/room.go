package secondary

import (
	"fmt"
	"sync"
	"syscall"
	"time"
)

// statfsFree returns the bytes available to an unprivileged writer on the
// file system that holds dir.
func statfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// reportedFree is the free space the secondary reports to the primary in
// its Welcome and Acks: a resync is journaled whole before it is applied,
// so the primary checks it fits before starting one. It is net of
// holdReserve, the room the secondary keeps besides a hold, so that a resync
// the primary finds room for is one the secondary holds to its end rather
// than gives up near it. 0 means unknown; 1, no room at all.
func (s *Secondary) reportedFree() uint64 {
	free, ok := s.journalFree()
	if !ok {
		return 0
	}
	return s.netOfReserve(free)
}

// netOfReserve is free, read from the journal's file system, as the
// secondary reports it: net of holdReserve, 1 if nothing is left.
func (s *Secondary) netOfReserve(free uint64) uint64 {
	if reserve := uint64(max(0, s.holdReserve())); free > reserve {
		return free - reserve
	}
	return 1
}

// receiptFree is reportedFree for a receipt, which answers every frame (50
// a second at idle, with a 20 ms interval): it reuses the last reading of
// the journal's file system while the journal has neither grown nor been
// trimmed since and the reading is younger than freeReadingAge, instead of
// a statfs per frame (3–7 % of an idle secondary's CPU at 1,024 volumes).
// A group journaled or a checkpoint's trim makes the next receipt read
// again, so what the journal itself takes is always in the figure; only
// other writers on the file system are seen up to freeReadingAge late. The
// hold's own check (releaseIfShort), the Welcome and the acknowledgement of
// a journaled group read afresh.
func (s *Secondary) receiptFree() uint64 {
	free, ok := s.room.cached(s.journalEpoch.Load(), time.Now())
	if !ok {
		return s.reportedFree()
	}
	return s.netOfReserve(free)
}

// freeReadingAge is how long a reading of the journal's free space serves
// receipts while the journal does not change: about a Checkpoint, the
// period at which an idle secondary journals an empty group anyway.
const freeReadingAge = time.Second

// freeReading is the last reading of the journal's file system's free
// space: when it was taken, and the journal's epoch (journalEpoch) then.
type freeReading struct {
	mu    sync.Mutex
	at    time.Time
	epoch uint64
	free  uint64
	known bool
}

// store keeps a reading unless the one kept was taken later: one taken
// at the same instant (within the clock's resolution) was taken after it,
// the secondary reading under its lock, and is the newer.
func (r *freeReading) store(epoch uint64, at time.Time, free uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.known || !at.Before(r.at) {
		r.at, r.epoch, r.free, r.known = at, epoch, free, true
	}
}

// cached returns the reading if it was taken at epoch, less than
// freeReadingAge before now.
func (r *freeReading) cached(epoch uint64, now time.Time) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.known || r.epoch != epoch || now.Sub(r.at) >= freeReadingAge || now.Before(r.at) {
		return 0, false
	}
	return r.free, true
}

// last returns the last reading, however old, and whether there is one.
func (r *freeReading) last() (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.free, r.known
}

// journalFree is the free space of the journal's file system, and whether
// it is known: a full file system reads 0, which is no room, not unknown.
func (s *Secondary) journalFree() (uint64, bool) {
	free := s.cfg.JournalFree
	if free == nil {
		free = func() (uint64, error) { return statfsFree(s.cfg.JournalDir) }
	}
	// The epoch before the reading: a journal change while it is taken
	// leaves it stale for the next receipt.
	epoch, at := s.journalEpoch.Load(), time.Now()
	n, err := free()
	if err != nil {
		return 0, false
	}
	s.room.store(epoch, at, n)
	return n, true
}

// JournalReserve is what the journal keeps of its file system for itself
// besides a hold; the free space the secondary reports is net of it.
func (s *Secondary) JournalReserve() int64 { return s.holdReserve() }
