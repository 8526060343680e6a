package subsystem

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"duplex/bitmap"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/timer"
)

// Mark captures a pair-state marker for vol and returns its timestamp. It is
// stamped under the ordering lock like a write, so every update of the
// subsystem captured before it has an earlier stamp and every later one a
// later stamp: the secondary sees the state change exactly where it happened
// among the writes. It never waits for sidefile space.
func (s *Subsystem) Mark(vol string, m recordset.Marker) (int64, error) {
	if _, ok := s.volumes[vol]; !ok {
		return 0, fmt.Errorf("subsystem %s: no volume %q", s.id, vol)
	}
	u := m.Update(vol)
	s.side.Take(sidefile.Cost(len(u.Data)))
	s.mu.Lock()
	defer s.mu.Unlock()
	u.Timestamp = s.timer.Now()
	s.side.Append(u)
	return u.Timestamp, nil
}

// SuspendMarked suspends vol like Suspend and captures m in the same
// critical section: every write of vol stamped before the marker is
// captured, every later one only recorded in bm, so the secondary copy is
// the primary volume as of the marker's timestamp.
func (s *Subsystem) SuspendMarked(vol string, bm *bitmap.Bitmap, m recordset.Marker) (int64, error) {
	return s.SuspendMarkedWithin(vol, bm, m, -1)
}

// SuspendMarkedWithin is SuspendMarked for an operator's command, which
// is answered in bounded time (wait not negative): while the ordering
// lock is held by a stamp that waits for the write of the common timer's
// lease (a client's write, the mover's cut), or the marker's own stamp
// would wait for it, it waits only until that write has taken wait, and
// then suspends nothing, returning a timer.LeaseHungError. Holding the
// lock, a stamp would wait for the lease's disk without bound.
func (s *Subsystem) SuspendMarkedWithin(vol string, bm *bitmap.Bitmap, m recordset.Marker, wait time.Duration) (int64, error) {
	cs := []Change{{S: s, Vol: vol, Marker: m, Bitmap: bm}}
	err := SuspendTogetherWithin(cs, wait)
	return cs[0].Timestamp, err
}

// ResumeMarkedWithin is ResumeMarked given up as SuspendMarkedWithin is:
// on a timer.LeaseHungError nothing is resumed.
func (s *Subsystem) ResumeMarkedWithin(vol string, m recordset.Marker, wait time.Duration) (*bitmap.Bitmap, int64, error) {
	cs := []Change{{S: s, Vol: vol, Marker: m}}
	err := changeWithin(cs, wait, func(c *Change) {
		c.Bitmap = s.tracking[vol]
		s.setTracking(vol, nil)
		if c.Bitmap != nil && c.Marker.Bytes == 0 {
			c.Marker.Bytes = uint64(c.Bitmap.DirtyBytes())
		}
	})
	return cs[0].Bitmap, cs[0].Timestamp, err
}

// lockWithin takes the ordering lock, as long as it takes, unless a
// stamp waits for the write of the timer's lease and that write has taken
// wait, and so has lockWithin (a write the disk has just let go ends
// first): the lock's holder may be that stamp. It then returns a
// timer.LeaseHungError, the lock not taken (the lock taken late, the
// attempt given up, is let go at once).
func (s *Subsystem) lockWithin(wait time.Duration) error {
	if wait < 0 {
		s.mu.Lock()
		return nil
	}
	start := time.Now()
	return timer.LockUnless(&s.mu, func() error {
		if err := s.timer.Hung(wait); err != nil && time.Since(start) >= wait {
			return err
		}
		return nil
	})
}

// ResumeMarked resumes vol like Resume and captures m, with Bytes (unless
// set) the changed bytes of the returned bitmap, in the same critical section: no
// write of vol is captured before the marker, so the secondary learns that a
// resync begins before the first update that depends on it.
func (s *Subsystem) ResumeMarked(vol string, m recordset.Marker) (*bitmap.Bitmap, int64, error) {
	return s.ResumeMarkedWithin(vol, m, -1)
}

// Change is one volume's part of a pair-state change made together across
// subsystems (SuspendTogether, ResumeTogether).
type Change struct {
	S      *Subsystem
	Vol    string
	Marker recordset.Marker
	// Bitmap receives vol's writes from the change on (SuspendTogether);
	// ResumeTogether sets it to the regions changed while suspended.
	Bitmap *bitmap.Bitmap
	// Timestamp is the marker's stamp, set by the change.
	Timestamp int64
}

// holdAllWithin takes the ordering lock of every distinct subsystem of
// cs, in the order of their ids so two changes never wait on each other,
// and returns the release. While they are all held no subsystem stamps a
// write, so what is done under them happens at one point of the common
// timer. Each lock is waited for as lockWithin does: given up (wait not
// negative), it returns the lock's error, holding none.
func holdAllWithin(cs []Change, wait time.Duration) (func(), error) {
	var subs []*Subsystem
	seen := map[*Subsystem]bool{}
	for _, c := range cs {
		if !seen[c.S] {
			seen[c.S] = true
			subs = append(subs, c.S)
		}
	}
	slices.SortFunc(subs, func(a, b *Subsystem) int { return strings.Compare(a.id, b.id) })
	release := func(held []*Subsystem) {
		for i := len(held) - 1; i >= 0; i-- {
			held[i].mu.Unlock()
		}
	}
	for i, s := range subs {
		if err := s.lockWithin(wait); err != nil {
			release(subs[:i])
			return nil, fmt.Errorf("subsystem %s: %w", s.id, err)
		}
	}
	return func() { release(subs) }, nil
}

// stampAllWithin stamps every change of cs, its subsystems' locks held;
// a stamp that waits for the write of the timer's lease waits until that
// write has taken wait (not negative, see timer.NowWithin): given up, it
// returns the stamp's error, none handed out (the ones taken leave a
// gap).
func stampAllWithin(cs []Change, wait time.Duration) ([]int64, error) {
	ts := make([]int64, len(cs))
	for i, c := range cs {
		var err error
		if wait < 0 {
			ts[i] = c.S.timer.Now()
		} else if ts[i], err = c.S.timer.NowWithin(wait); err != nil {
			return nil, fmt.Errorf("subsystem %s: %w", c.S.id, err)
		}
	}
	return ts, nil
}

// takeAll takes the room of every change's marker in its sidefile, and
// returns its release.
func takeAll(cs []Change) func() {
	for _, c := range cs {
		c.S.side.Take(sidefile.Cost(recordset.MarkerSize))
	}
	return func() {
		for _, c := range cs {
			c.S.side.Release(sidefile.Cost(recordset.MarkerSize))
		}
	}
}

func checkChanges(cs []Change) error {
	for _, c := range cs {
		if _, ok := c.S.volumes[c.Vol]; !ok {
			return fmt.Errorf("subsystem %s: no volume %q", c.S.id, c.Vol)
		}
	}
	return nil
}

// SuspendTogether suspends every volume of cs, each into its Bitmap, and
// captures each marker, at one point of the common timer across all their
// subsystems: every write of any of them stamped before the first marker is
// captured, every write stamped after the last only recorded in a bitmap.
// Suspending volume after volume instead would let a write to one volume be
// shipped while an earlier write it depends on, to a volume suspended
// before, is not: a state the primary never held.
func SuspendTogether(cs []Change) error { return SuspendTogetherWithin(cs, -1) }

// SuspendTogetherWithin is SuspendTogether for an operator's command
// (wait not negative), given up as SuspendMarkedWithin is: on a
// timer.LeaseHungError no volume is suspended.
func SuspendTogetherWithin(cs []Change, wait time.Duration) error {
	return changeWithin(cs, wait, func(c *Change) { c.S.setTracking(c.Vol, c.Bitmap) })
}

// changeWithin makes the changes cs at one point of the common timer:
// it takes the room of their markers, their subsystems' locks (see
// holdAllWithin) and their stamps (see stampAllWithin), then, the locks
// held, applies each change and captures its marker (with the Bytes
// apply set) at its stamp. Given up for the timer's lease (wait not
// negative), it returns the error with nothing changed.
func changeWithin(cs []Change, wait time.Duration, apply func(c *Change)) error {
	if err := checkChanges(cs); err != nil {
		return err
	}
	unTake := takeAll(cs)
	release, err := holdAllWithin(cs, wait)
	if err != nil {
		unTake()
		return err
	}
	defer release()
	ts, err := stampAllWithin(cs, wait)
	if err != nil {
		unTake()
		return err
	}
	for i := range cs {
		c := &cs[i]
		apply(c)
		u := c.Marker.Update(c.Vol)
		u.Timestamp = ts[i]
		c.S.side.Append(u)
		c.Timestamp = u.Timestamp
	}
	return nil
}

// ResumeTogether resumes every volume of cs and captures each marker, with
// Bytes set to the changed bytes of the bitmap it returns in Bitmap, at one
// point of the common timer across all their subsystems (see
// SuspendTogether).
func ResumeTogether(cs []Change) error { return ResumeTogetherWithin(cs, -1) }

// ResumeTogetherWithin is ResumeTogether for an operator's command (wait
// not negative), given up as SuspendMarkedWithin is: on a
// timer.LeaseHungError no volume is resumed.
func ResumeTogetherWithin(cs []Change, wait time.Duration) error {
	return changeWithin(cs, wait, func(c *Change) {
		c.Bitmap = c.S.tracking[c.Vol]
		c.S.setTracking(c.Vol, nil)
		if c.Bitmap != nil {
			c.Marker.Bytes = uint64(c.Bitmap.DirtyBytes())
		}
	})
}

// MarkWithin is Mark for a change the pair manager makes holding its own
// lock (a copy's end): given up as SuspendMarkedWithin is (wait not
// negative), nothing is captured, and the error is a
// timer.LeaseHungError.
func (s *Subsystem) MarkWithin(vol string, m recordset.Marker, wait time.Duration) (int64, error) {
	cs := []Change{{S: s, Vol: vol, Marker: m}}
	err := changeWithin(cs, wait, func(*Change) {})
	return cs[0].Timestamp, err
}

// StampWithin is Stamp for a change the pair manager makes holding its
// own lock without a marker (a copy's end whose marker failed): given up
// as SuspendMarkedWithin is (wait not negative), no stamp is handed out,
// and the error is a timer.LeaseHungError.
func (s *Subsystem) StampWithin(wait time.Duration) (int64, error) {
	if err := s.lockWithin(wait); err != nil {
		return 0, fmt.Errorf("subsystem %s: %w", s.id, err)
	}
	defer s.mu.Unlock()
	if wait < 0 {
		return s.timer.Now(), nil
	}
	ts, err := s.timer.NowWithin(wait)
	if err != nil {
		return 0, fmt.Errorf("subsystem %s: %w", s.id, err)
	}
	return ts, nil
}

// LeaseHung returns a timer.LeaseHungError if the write of the common
// timer's lease under way has taken wait and stamps wait for it, or a
// stamp taken now would: a change stamped now would wait for it too. The
// pair manager puts its own changes off meanwhile rather than hold its
// lock for them. No stamp need wait for the write to be known hung: the
// manager's own, given up, no longer waits, and with no client's write
// waiting either it would try again, holding its lock for the same wait,
// as long as the disk does not answer.
func (s *Subsystem) LeaseHung(wait time.Duration) error {
	if err := s.timer.Hung(wait); err != nil {
		return err
	}
	if d, waiting := s.timer.LeaseWait(); d > 0 && d >= wait && s.timer.StampWaits() {
		return &timer.LeaseHungError{D: d, Waiting: waiting}
	}
	return nil
}

// LeaseGivenUp says whether the stop gave the common timer's lease up
// (see timer.Timer.GivenUp).
func (s *Subsystem) LeaseGivenUp() bool { return s.timer.GivenUp() }
