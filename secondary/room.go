package secondary

import (
	"fmt"
	"syscall"
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
	if reserve := uint64(max(0, s.holdReserve())); free > reserve {
		return free - reserve
	}
	return 1
}

// journalFree is the free space of the journal's file system, and whether
// it is known: a full file system reads 0, which is no room, not unknown.
func (s *Secondary) journalFree() (uint64, bool) {
	free := s.cfg.JournalFree
	if free == nil {
		free = func() (uint64, error) { return statfsFree(s.cfg.JournalDir) }
	}
	n, err := free()
	if err != nil {
		return 0, false
	}
	return n, true
}

// JournalReserve is what the journal keeps of its file system for itself
// besides a hold; the free space the secondary reports is net of it.
func (s *Secondary) JournalReserve() int64 { return s.holdReserve() }
