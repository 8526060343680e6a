package history

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// ErrScratchFull is wrapped by the error of a Scratch asked to hold more
// than its limit.
var ErrScratchFull = errors.New("the scratch file is full")

// Scratch is a file of bounded size that grows by appends: the images a
// spilled Overlay keeps, and whatever else its owner keeps beside them (a
// failover drill's writes). Nothing in it outlives the process: it is not
// synced, and Create starts it empty, so a crash leaves at most a file
// that the next Create truncates. Its methods are safe for concurrent use.
type Scratch struct {
	f     *os.File
	path  string
	limit int64

	mu   sync.Mutex
	size int64
}

// CreateScratch creates the file path, empty (truncating whatever a
// crashed process left there), to hold at most limit bytes.
func CreateScratch(path string, limit int64) (*Scratch, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("history: scratch file: %w", err)
	}
	return &Scratch{f: f, path: path, limit: limit}, nil
}

// Append writes p at the end of the file and returns its offset. Past the
// limit it writes nothing and fails with ErrScratchFull.
func (s *Scratch) Append(p []byte) (int64, error) {
	n := int64(len(p))
	s.mu.Lock()
	if s.size+n > s.limit {
		size := s.size
		s.mu.Unlock()
		return 0, fmt.Errorf("history: the scratch file %s holds %d MiB; %d bytes more would pass its %d MiB: %w",
			s.path, size>>20, n, s.limit>>20, ErrScratchFull)
	}
	off := s.size
	s.size += n
	s.mu.Unlock()
	if err := s.WriteAt(p, off); err != nil {
		return 0, err
	}
	return off, nil
}

// WriteAt overwrites what an Append placed at off.
func (s *Scratch) WriteAt(p []byte, off int64) error {
	if _, err := s.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("history: scratch file: %w", err)
	}
	return nil
}

// ReadAt reads what Appends placed at off.
func (s *Scratch) ReadAt(p []byte, off int64) error {
	if _, err := s.f.ReadAt(p, off); err != nil {
		return fmt.Errorf("history: scratch file %s at %d: %w", s.path, off, err)
	}
	return nil
}

// Bytes is what the file holds.
func (s *Scratch) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Limit is the most it may hold.
func (s *Scratch) Limit() int64 { return s.limit }

// Path is the file's.
func (s *Scratch) Path() string { return s.path }

// Close closes and removes the file.
func (s *Scratch) Close() error {
	err := s.f.Close()
	if rerr := os.Remove(s.path); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("history: scratch file: %w", err)
	}
	return nil
}
