// Package sidefile is step (b) of the method: the primary storage subsystem
// keeps each update, with its record information, until the data mover has
// taken it and the secondary has journaled it.
//
// A Sidefile is bounded in bytes, and the bound counts everything the primary
// holds for replication: an update's bytes are reserved before it is captured
// and released only when the secondary acknowledges the record set that carried
// it, not when the mover reads it. When the bound is reached, writers wait in
// Reserve; that wait is where write pacing hooks in.
package sidefile

import (
	"context"
	"fmt"
	"sync"
	"time"

	"duplex/recordset"
)

// EntryOverhead is what one update costs beyond its data: the record info
// and bookkeeping that travel and wait with it.
const EntryOverhead = 64

// Cost is the number of bytes an update holds in the sidefile.
func Cost(dataLen int) int64 { return int64(dataLen) + EntryOverhead }

// Sidefile is one subsystem's queue of captured updates. Append and Drain must be
// called under the owning subsystem's ordering lock, so that sidefile order is
// timestamp order; Reserve and Release may be called from anywhere.
type Sidefile struct {
	limit int64

	mu      sync.Mutex
	space   chan struct{} // closed and replaced whenever bytes are released
	used    int64
	entries []recordset.Update
	nextSeq uint64

	waits     uint64
	waitTotal time.Duration
	waiting   int
}

// New returns a sidefile holding at most limit bytes.
func New(limit int64) *Sidefile {
	return &Sidefile{limit: limit, space: make(chan struct{}), nextSeq: 1}
}

// Reserve takes n bytes of the sidefile's budget, waiting while it is full.
// It returns how long it waited.
func (s *Sidefile) Reserve(ctx context.Context, n int64) (time.Duration, error) {
	if n > s.limit {
		return 0, fmt.Errorf("sidefile: update of %d bytes exceeds the sidefile limit of %d bytes", n, s.limit)
	}
	var start time.Time
	s.mu.Lock()
	for s.used+n > s.limit {
		if start.IsZero() {
			start = time.Now()
			s.waits++
		}
		s.waiting++
		ch := s.space
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			s.mu.Lock()
			s.waiting--
			s.mu.Unlock()
			return time.Since(start), fmt.Errorf("sidefile: waiting for space: %w", ctx.Err())
		}
		s.mu.Lock()
		s.waiting--
	}
	s.used += n
	var waited time.Duration
	if !start.IsZero() {
		waited = time.Since(start)
		s.waitTotal += waited
	}
	s.mu.Unlock()
	return waited, nil
}

// Release returns n bytes to the budget and wakes waiting writers.
func (s *Sidefile) Release(n int64) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	s.used -= n
	if s.used < 0 {
		panic(fmt.Sprintf("sidefile: released more than reserved (used %d)", s.used))
	}
	close(s.space)
	s.space = make(chan struct{})
	s.mu.Unlock()
}

// Append captures an update whose bytes were reserved, assigning its update
// sequence number.
func (s *Sidefile) Append(u recordset.Update) {
	s.mu.Lock()
	u.Seq = s.nextSeq
	s.nextSeq++
	s.entries = append(s.entries, u)
	s.mu.Unlock()
}

// Drain hands every captured update to the data mover. Their bytes stay
// reserved until Release.
func (s *Sidefile) Drain() []recordset.Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.entries
	s.entries = nil
	return out
}

// Stats is a snapshot for status and metrics.
type Stats struct {
	Used, Limit int64
	Captured    int           // updates not yet read by the mover
	Waits       uint64        // writes that had to wait for space
	WaitTotal   time.Duration // total time writers waited
	Waiting     int           // writers waiting now
}

// Stats returns a snapshot.
func (s *Sidefile) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Used: s.used, Limit: s.limit, Captured: len(s.entries), Waits: s.waits, WaitTotal: s.waitTotal, Waiting: s.waiting}
}
