package subsystem

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"duplex/bitmap"
	"duplex/recordset"
	"duplex/sidefile"
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
	if _, ok := s.volumes[vol]; !ok {
		return 0, fmt.Errorf("subsystem %s: no volume %q", s.id, vol)
	}
	u := m.Update(vol)
	s.side.Take(sidefile.Cost(len(u.Data)))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setTracking(vol, bm)
	u.Timestamp = s.timer.Now()
	s.side.Append(u)
	return u.Timestamp, nil
}

// SuspendMarkedWithin is SuspendMarked for an operator's command, which
// is answered in bounded time: while the ordering lock is held by a stamp
// that waits for the write of the common timer's lease (a client's write,
// the mover's cut), or the marker's own stamp would wait for it, it waits
// only until that write has taken wait, and then suspends nothing,
// returning a timer.LeaseHungError. Holding the lock, a stamp would wait
// for the lease's disk without bound.
func (s *Subsystem) SuspendMarkedWithin(vol string, bm *bitmap.Bitmap, m recordset.Marker, wait time.Duration) (int64, error) {
	if _, ok := s.volumes[vol]; !ok {
		return 0, fmt.Errorf("subsystem %s: no volume %q", s.id, vol)
	}
	u := m.Update(vol)
	unlock, err := s.stampWithin(&u, wait)
	if err != nil {
		return 0, err
	}
	defer unlock()
	s.setTracking(vol, bm)
	s.side.Append(u)
	return u.Timestamp, nil
}

// ResumeMarkedWithin is ResumeMarked given up as SuspendMarkedWithin is:
// on a timer.LeaseHungError nothing is resumed.
func (s *Subsystem) ResumeMarkedWithin(vol string, m recordset.Marker, wait time.Duration) (*bitmap.Bitmap, int64, error) {
	if _, ok := s.volumes[vol]; !ok {
		return nil, 0, fmt.Errorf("subsystem %s: no volume %q", s.id, vol)
	}
	// The marker's size does not depend on Bytes, which is counted under
	// the lock, as ResumeMarked does.
	u := m.Update(vol)
	unlock, err := s.stampWithin(&u, wait)
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
	bm := s.tracking[vol]
	s.setTracking(vol, nil)
	if bm != nil && m.Bytes == 0 {
		m.Bytes = uint64(bm.DirtyBytes())
	}
	ts := u.Timestamp
	u = m.Update(vol)
	u.Timestamp = ts
	s.side.Append(u)
	return bm, ts, nil
}

// stampWithin takes the ordering lock and stamps u, a marker, taking its
// room in the sidefile, as Mark does, waiting for a stamp held up by the
// write of the timer's lease only until that write has taken wait: then
// it returns a timer.LeaseHungError, with neither the lock nor the room
// taken. Otherwise the caller captures u and calls unlock.
func (s *Subsystem) stampWithin(u *recordset.Update, wait time.Duration) (unlock func(), err error) {
	cost := sidefile.Cost(len(u.Data))
	s.side.Take(cost)
	if err := s.lockWithin(wait); err != nil {
		s.side.Release(cost)
		return nil, fmt.Errorf("subsystem %s: %w", s.id, err)
	}
	ts, err := s.timer.NowWithin(wait)
	if err != nil {
		s.mu.Unlock()
		s.side.Release(cost)
		return nil, fmt.Errorf("subsystem %s: %w", s.id, err)
	}
	u.Timestamp = ts
	return s.mu.Unlock, nil
}

// lockWithin takes the ordering lock, as long as it takes, unless a
// stamp waits for the write of the timer's lease and that write has taken
// wait: the lock's holder may be that stamp. It then returns a
// timer.LeaseHungError, the lock not taken (the lock taken late, the
// attempt given up, is let go at once).
func (s *Subsystem) lockWithin(wait time.Duration) error {
	if s.mu.TryLock() {
		return nil
	}
	var mu sync.Mutex
	givenUp := false
	got := make(chan struct{})
	go func() {
		s.mu.Lock()
		mu.Lock()
		defer mu.Unlock()
		if givenUp {
			s.mu.Unlock()
			return
		}
		close(got)
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-got:
			return nil
		case <-tick.C:
		}
		if err := s.timer.Hung(wait); err != nil {
			mu.Lock()
			defer mu.Unlock()
			select {
			case <-got:
				return nil
			default:
			}
			givenUp = true
			return err
		}
	}
}

// ResumeMarked resumes vol like Resume and captures m, with Bytes (unless
// set) the changed bytes of the returned bitmap, in the same critical section: no
// write of vol is captured before the marker, so the secondary learns that a
// resync begins before the first update that depends on it.
func (s *Subsystem) ResumeMarked(vol string, m recordset.Marker) (*bitmap.Bitmap, int64, error) {
	if _, ok := s.volumes[vol]; !ok {
		return nil, 0, fmt.Errorf("subsystem %s: no volume %q", s.id, vol)
	}
	s.side.Take(sidefile.Cost(recordset.MarkerSize))
	s.mu.Lock()
	defer s.mu.Unlock()
	bm := s.tracking[vol]
	s.setTracking(vol, nil)
	if bm != nil && m.Bytes == 0 {
		m.Bytes = uint64(bm.DirtyBytes())
	}
	u := m.Update(vol)
	u.Timestamp = s.timer.Now()
	s.side.Append(u)
	return bm, u.Timestamp, nil
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

// holdAll takes the ordering lock of every distinct subsystem of cs, in the
// order of their ids so two changes never wait on each other, and returns
// the release. While they are all held no subsystem stamps a write, so what
// is done under them happens at one point of the common timer.
func holdAll(cs []Change) func() {
	var subs []*Subsystem
	seen := map[*Subsystem]bool{}
	for _, c := range cs {
		if !seen[c.S] {
			seen[c.S] = true
			subs = append(subs, c.S)
		}
	}
	slices.SortFunc(subs, func(a, b *Subsystem) int { return strings.Compare(a.id, b.id) })
	for _, s := range subs {
		s.mu.Lock()
	}
	return func() {
		for i := len(subs) - 1; i >= 0; i-- {
			subs[i].mu.Unlock()
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
func SuspendTogether(cs []Change) error {
	if err := checkChanges(cs); err != nil {
		return err
	}
	for _, c := range cs {
		c.S.side.Take(sidefile.Cost(recordset.MarkerSize))
	}
	release := holdAll(cs)
	defer release()
	for i := range cs {
		c := &cs[i]
		c.S.setTracking(c.Vol, c.Bitmap)
		u := c.Marker.Update(c.Vol)
		u.Timestamp = c.S.timer.Now()
		c.S.side.Append(u)
		c.Timestamp = u.Timestamp
	}
	return nil
}

// ResumeTogether resumes every volume of cs and captures each marker, with
// Bytes set to the changed bytes of the bitmap it returns in Bitmap, at one
// point of the common timer across all their subsystems (see
// SuspendTogether).
func ResumeTogether(cs []Change) error {
	if err := checkChanges(cs); err != nil {
		return err
	}
	for _, c := range cs {
		c.S.side.Take(sidefile.Cost(recordset.MarkerSize))
	}
	release := holdAll(cs)
	defer release()
	for i := range cs {
		c := &cs[i]
		c.Bitmap = c.S.tracking[c.Vol]
		c.S.setTracking(c.Vol, nil)
		if c.Bitmap != nil {
			c.Marker.Bytes = uint64(c.Bitmap.DirtyBytes())
		}
		u := c.Marker.Update(c.Vol)
		u.Timestamp = c.S.timer.Now()
		c.S.side.Append(u)
		c.Timestamp = u.Timestamp
	}
	return nil
}
