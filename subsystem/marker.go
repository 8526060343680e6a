package subsystem

import (
	"fmt"

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
	s.tracking[vol] = bm
	u.Timestamp = s.timer.Now()
	s.side.Append(u)
	return u.Timestamp, nil
}

// ResumeMarked resumes vol like Resume and captures m, with Bytes set to the
// changed bytes of the returned bitmap, in the same critical section: no
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
	delete(s.tracking, vol)
	if bm != nil {
		m.Bytes = uint64(bm.DirtyBytes())
	}
	u := m.Update(vol)
	u.Timestamp = s.timer.Now()
	s.side.Append(u)
	return bm, u.Timestamp, nil
}
