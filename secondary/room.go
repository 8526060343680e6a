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

// journalFree is the free space the secondary reports to the primary in
// its Welcome and Acks: a resync is journaled whole before it is applied,
// so the primary checks it fits before starting one. 0 means unknown.
func (s *Secondary) journalFree() uint64 {
	free := s.cfg.JournalFree
	if free == nil {
		free = func() (uint64, error) { return statfsFree(s.cfg.JournalDir) }
	}
	n, err := free()
	if err != nil {
		return 0
	}
	return n
}
