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

// Pacing slows writers as the sidefile fills, like XRC's pacing levels: no
// delay below Start (a fraction of the limit), then a delay per write that
// grows with the square of the fill beyond Start, reaching MaxDelay when full.
// Applications slow down gradually instead of stalling at the limit.
type Pacing struct {
	Start    float64
	MaxDelay time.Duration
}

// DefaultPacing starts at half full and reaches 20ms per write when full.
var DefaultPacing = Pacing{Start: 0.5, MaxDelay: 20 * time.Millisecond}

// Delay returns the pacing delay for a fill fraction in [0, 1].
func (p Pacing) Delay(fill float64) time.Duration {
	if p.MaxDelay <= 0 || fill <= p.Start || p.Start >= 1 {
		return 0
	}
	x := min((fill-p.Start)/(1-p.Start), 1)
	return time.Duration(x * x * float64(p.MaxDelay))
}

// Sidefile is one subsystem's queue of captured updates. Append and Drain must be
// called under the owning subsystem's ordering lock, so that sidefile order is
// timestamp order; Reserve and Release may be called from anywhere.
type Sidefile struct {
	limit  int64
	pacing Pacing

	mu      sync.Mutex
	space   chan struct{} // closed and replaced whenever bytes are released
	used    int64
	entries []recordset.Update
	nextSeq uint64

	waits       uint64
	waitTotal   time.Duration
	waiting     int
	paced       uint64
	pacingTotal time.Duration
}

// New returns a sidefile holding at most limit bytes, with DefaultPacing.
func New(limit int64) *Sidefile {
	return &Sidefile{limit: limit, pacing: DefaultPacing, space: make(chan struct{}), nextSeq: 1}
}

// Limit returns the most bytes the sidefile holds, which never changes:
// read on every write, without the lock Stats takes.
func (s *Sidefile) Limit() int64 { return s.limit }

// SetPacing replaces the pacing policy; the zero Pacing turns pacing off.
func (s *Sidefile) SetPacing(p Pacing) {
	s.mu.Lock()
	s.pacing = p
	s.mu.Unlock()
}

// Unpaced returns the bytes the sidefile holds before pacing starts: its
// limit where pacing is off.
func (s *Sidefile) Unpaced() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pacing.MaxDelay <= 0 || s.pacing.Start >= 1 {
		return s.limit
	}
	return int64(s.pacing.Start * float64(s.limit))
}

// Holds says whether the sidefile holds share of its unpaced bytes
// (Unpaced) or more.
func (s *Sidefile) Holds(share float64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	unpaced := s.limit
	if s.pacing.MaxDelay > 0 && s.pacing.Start < 1 {
		unpaced = int64(s.pacing.Start * float64(s.limit))
	}
	return float64(s.used) >= share*float64(unpaced)
}

// Prompt says a Reserve of n bytes now would neither be paced nor wait.
func (s *Sidefile) Prompt(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used+n <= s.limit && s.pacing.Delay(float64(s.used)/float64(s.limit)) == 0
}

// TryReserve is Reserve for a writer that must not wait: it takes n bytes
// only if Reserve would neither pace nor wait for them, and says whether
// it did.
func (s *Sidefile) TryReserve(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used+n > s.limit || s.pacing.Delay(float64(s.used)/float64(s.limit)) != 0 {
		return false
	}
	s.used += n
	return true
}

// Reserve takes n bytes of the sidefile's budget: first it paces the writer
// according to the fill, then it waits while the sidefile is full. It returns
// how long the writer was held in all.
func (s *Sidefile) Reserve(ctx context.Context, n int64) (time.Duration, error) {
	if n > s.limit {
		return 0, fmt.Errorf("sidefile: update of %d bytes exceeds the sidefile limit of %d bytes", n, s.limit)
	}
	s.mu.Lock()
	delay := s.pacing.Delay(float64(s.used) / float64(s.limit))
	if delay == 0 && s.used+n <= s.limit {
		// Neither paced nor waiting, as nearly every write: one lock
		// taken instead of two.
		s.used += n
		s.mu.Unlock()
		return 0, nil
	}
	if delay > 0 {
		s.paced++
		s.pacingTotal += delay
	}
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return delay, fmt.Errorf("sidefile: pacing: %w", ctx.Err())
		}
	}
	waited, err := s.reserve(ctx, n)
	return delay + waited, err
}

func (s *Sidefile) reserve(ctx context.Context, n int64) (time.Duration, error) {
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

// Take takes n bytes of the budget at once, even past the limit: a
// pair-state marker costs a few bytes and must not wait behind writes while
// its caller holds the pair manager's lock.
func (s *Sidefile) Take(n int64) {
	s.mu.Lock()
	s.used += n
	s.mu.Unlock()
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
	// The next interval likely captures about as many: room for them
	// saves growing the slice step by step under the ordering lock.
	s.entries = nil
	if len(out) > 0 {
		s.entries = make([]recordset.Update, 0, len(out))
	}
	return out
}

// CapturedAll reports whether keep holds for every update captured and
// not yet drained, which stay captured: a stop asks whether what it would
// otherwise wait to ship can be given up.
func (s *Sidefile) CapturedAll(keep func(*recordset.Update) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.entries {
		if !keep(&s.entries[i]) {
			return false
		}
	}
	return true
}

// Stats is a snapshot for status and metrics.
type Stats struct {
	Used, Limit int64
	Captured    int           // updates not yet read by the mover
	Waits       uint64        // writes that had to wait for space
	WaitTotal   time.Duration // total time writers waited
	Waiting     int           // writers waiting now
	Paced       uint64        // writes delayed by pacing
	PacingTotal time.Duration // total pacing delay
}

// Stats returns a snapshot.
func (s *Sidefile) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Used: s.used, Limit: s.limit, Captured: len(s.entries), Waits: s.waits, WaitTotal: s.waitTotal, Waiting: s.waiting,
		Paced: s.paced, PacingTotal: s.pacingTotal}
}
