// Package consistency is step (f) of the method: the secondary forms
// consistency groups from the record sets it receives.
//
// Each subsystem's record sets are numbered contiguously. A record set is
// accepted only in sequence: a duplicate is discarded, one that arrives early is
// held until the gap before it fills, so a gap never becomes part of a group.
// Each accepted record set reports its subsystem's horizon: the time through
// which that subsystem's updates are complete.
//
// The consistency time is the minimum over all configured subsystems of the
// horizon each has reported contiguously. Every update stamped at or before it
// is known, and no update stamped at or before it can still arrive, so those
// updates, in timestamp order, form the next consistency group; later ones wait.
// Because the primary's common timer stamps a write issued after another was
// acknowledged later than that one, a group that holds a write holds every write
// it depended on. A subsystem that never reports holds consistency back; Laggard
// names it.
//
// An idle subsystem may report by heartbeat instead of by an empty record
// set: "every update stamped at or before H is in my record sets through
// n". It counts exactly as an empty record set numbered n+1 with horizon H
// would, and only once every record set through n is accepted in order;
// before that it is ignored (a later heartbeat or record set reports
// again), so the consistency time is the same minimum over every
// subsystem of a horizon reported contiguously.
package consistency

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"duplex/recordset"
)

// MaxEarly bounds the record sets held per subsystem while waiting for a gap to
// fill; beyond it, early arrivals are dropped and the primary's retransmission
// brings them again.
const MaxEarly = 4096

// Outcome says what Add did with a record set.
type Outcome int

const (
	Accepted  Outcome = iota // in sequence: its updates are pending
	Duplicate                // already accepted; discarded
	Early                    // ahead of a gap; held
	Dropped                  // ahead of a gap, and too many held; discarded
)

func (o Outcome) String() string {
	return [...]string{"accepted", "duplicate", "early", "dropped"}[o]
}

// ErrStale is returned for a record set with an update stamped at or before
// the consistency time already reached, other than the repeat of an update
// already journaled: taking it would drop it, since every group through that
// time is formed. A primary whose clock is behind the one that stamped what
// the secondary holds sends such updates.
var ErrStale = errors.New("update stamped at or before the consistency time")

// ErrOutOfOrder is returned for a record set with an update stamped at or
// before an earlier update of its subsystem, or stamped alike with an
// update of another subsystem not yet in a group. One primary process
// stamps every subsystem's writes from one timer, strictly increasing,
// and a subsystem's record sets hold them in that order, so no primary
// sends such a set unless its timer is broken; taken, it would leave a
// group that cannot be ordered by stamp, which the journal refuses.
var ErrOutOfOrder = errors.New("update stamped out of order")

// ErrForeign is returned for a record set of another session or an unknown
// subsystem.
var ErrForeign = errors.New("record set does not belong to this session")

// Group is a consistency group: the updates through Time, in timestamp order.
type Group struct {
	// Number is assigned by whoever journals the group: groups that advance
	// the time without updates need not be journaled, and journaled groups are
	// numbered without gaps.
	Number uint64
	Time   int64
	// Through is, per subsystem, the last record-set sequence number all of
	// whose updates are in this group or an earlier one.
	Through map[string]uint64
	Updates []recordset.Update
}

type received struct {
	seq     uint64
	highest int64 // highest update timestamp of the record set, 0 if empty
}

type subsystem struct {
	next     uint64 // next record-set sequence number expected
	repeat   bool   // the next record set may repeat journaled updates (see check)
	horizon  int64
	last     int64              // highest stamp of an update accepted into pending
	pending  []recordset.Update // accepted, stamped after the consistency time, in order
	accepted []received         // accepted record sets not yet wholly in a group
	through  uint64
	early    map[uint64]*recordset.RecordSet
}

// Former forms consistency groups. It is not safe for concurrent use.
type Former struct {
	session string
	subs    map[string]*subsystem
	names   []string
	time    int64
	start   int64 // consistency time at the start
}

// Start is where a Former resumes: the last journaled group.
type Start struct {
	Time    int64
	Through map[string]uint64
	// Resent says the primary process that sent the journaled groups is
	// the one connecting: per subsystem, the record sets after Through, up
	// to the first that carries an update or a horizon after Time, may come
	// again with their updates through Time already in a group, and those
	// are skipped. There are several when the primary re-forms a partly
	// journaled record set to smaller limits. From any other primary, an
	// update stamped through Time is refused with ErrStale.
	Resent bool
}

// New returns a Former for the configured subsystems, resuming after start.
func New(session string, subsystems []string, start Start) *Former {
	f := &Former{session: session, subs: map[string]*subsystem{}, time: start.Time, start: start.Time}
	for _, name := range subsystems {
		t := start.Through[name]
		f.subs[name] = &subsystem{next: t + 1, through: t, horizon: start.Time, early: map[uint64]*recordset.RecordSet{}}
		f.subs[name].repeat = start.Resent
		f.names = append(f.names, name)
	}
	sort.Strings(f.names)
	return f
}

// Time returns the consistency time of the last group formed.
func (f *Former) Time() int64 { return f.time }

// Through returns, per subsystem, the record sets wholly in formed groups.
func (f *Former) Through() map[string]uint64 {
	m := make(map[string]uint64, len(f.subs))
	for n, s := range f.subs {
		m[n] = s.through
	}
	return m
}

// Received returns, per subsystem, the last record set accepted in order.
func (f *Former) Received() map[string]uint64 {
	m := make(map[string]uint64, len(f.subs))
	for n, s := range f.subs {
		m[n] = s.next - 1
	}
	return m
}

// Ahead returns, per subsystem with a gap, the highest record set held early.
func (f *Former) Ahead() map[string]uint64 {
	m := map[string]uint64{}
	for n, s := range f.subs {
		for seq := range s.early {
			m[n] = max(m[n], seq)
		}
	}
	return m
}

// Holds reports whether the Former holds any update or record set it was
// given (pending a group, or early): the data of the record sets it was
// given is read again only while it does, or through the groups it formed.
func (f *Former) Holds() bool {
	for _, s := range f.subs {
		if len(s.pending) > 0 || len(s.early) > 0 {
			return true
		}
	}
	return false
}

// Formed reports whether every update of record set seq of subsystem is
// in a formed group: the Former reads that set's data no more. A set not
// taken yet, or held early, is not.
func (f *Former) Formed(subsystem string, seq uint64) bool {
	s, ok := f.subs[subsystem]
	return ok && seq <= s.through
}

// Add takes one decoded record set. The Former keeps its updates (the
// slice, not a copy) until they are formed into a group, whose Updates may
// be that slice: neither the caller nor the group's users change them.
func (f *Former) Add(rs *recordset.RecordSet) (Outcome, error) {
	if rs.Session != f.session {
		return Dropped, fmt.Errorf("record set of session %q, want %q: %w", rs.Session, f.session, ErrForeign)
	}
	s, ok := f.subs[rs.Subsystem]
	if !ok {
		return Dropped, fmt.Errorf("record set of unknown subsystem %q: %w", rs.Subsystem, ErrForeign)
	}
	switch {
	case rs.Seq < s.next:
		return Duplicate, nil
	case rs.Seq > s.next:
		if _, held := s.early[rs.Seq]; held {
			return Duplicate, nil
		}
		if len(s.early) >= MaxEarly {
			return Dropped, nil
		}
		s.early[rs.Seq] = rs
		return Early, nil
	}
	if err := f.check(s, rs); err != nil {
		return Dropped, err
	}
	f.accept(s, rs)
	for {
		nx, ok := s.early[s.next]
		if !ok {
			break
		}
		if err := f.check(s, nx); err != nil {
			return Accepted, err
		}
		delete(s.early, s.next)
		f.accept(s, nx)
	}
	return Accepted, nil
}

// check refuses a record set holding an update that accept would drop for
// its stamp, other than the repeat of a journaled one.
//
// An update stamped at or before the start time is taken for a journaled
// repeat only from the primary process whose record sets were journaled,
// and only until a record set of its subsystem carries an update or a
// horizon after the start time. That never skips an update not journaled:
// the group through the start time was formed only once the subsystem's
// horizon reached it, and a horizon says every update of that subsystem
// stamped at or before it had arrived, so every update that process
// stamped at or before the start time is in a journaled group, whichever
// record sets it is re-formed into. Nor is one applied twice: accept skips
// them all. Past the window the subsystem's stamps only rise, so an update
// stamped at or before the start time there comes from a clock gone back,
// and is refused rather than skipped. The secondary decides this rather
// than the primary dropping them on the Welcome's word: only the secondary
// knows which process its journal came from, and a primary that dropped
// updates of record sets never sent would lose them silently.
func (f *Former) check(s *subsystem, rs *recordset.RecordSet) error {
	kept := false
	for i, u := range rs.Updates {
		if u.Timestamp > f.time {
			if !kept {
				// The set's stamps rise (the decoder holds them to it):
				// its first kept update is its lowest.
				kept = true
				if u.Timestamp <= s.last {
					return fmt.Errorf("record set %s/%d: update %d of %d (volume %q) is stamped %d (%s), not after %d (%s) of an earlier record set of its subsystem: "+
						"the primary's timer went back: %w",
						rs.Subsystem, rs.Seq, i+1, len(rs.Updates), u.Volume, u.Timestamp, stampString(u.Timestamp), s.last, stampString(s.last), ErrOutOfOrder)
				}
			}
			continue
		}
		if s.repeat && u.Timestamp <= f.start {
			continue
		}
		return fmt.Errorf("record set %s/%d: update %d of %d (volume %q) is stamped %d (%s), not after the consistency time %d (%s) already reached: "+
			"the primary's clock is behind the clock that stamped what the secondary holds: %w",
			rs.Subsystem, rs.Seq, i+1, len(rs.Updates), u.Volume, u.Timestamp, stampString(u.Timestamp), f.time, stampString(f.time), ErrStale)
	}
	return f.checkDistinct(rs)
}

// checkDistinct refuses a record set with an update stamped alike with a
// pending update of another subsystem. Stamps at or before the consistency
// time are checked by check, against the groups formed; only pending ones
// can collide. Each list is in stamp order, so one walk over the two
// overlapping ranges finds a collision: the cost is the overlap, and a
// subsystem with nothing pending costs nothing.
func (f *Former) checkDistinct(rs *recordset.RecordSet) error {
	ups := rs.Updates
	lo := sort.Search(len(ups), func(i int) bool { return ups[i].Timestamp > f.time })
	ups = ups[lo:]
	if len(ups) == 0 {
		return nil
	}
	first, last := ups[0].Timestamp, ups[len(ups)-1].Timestamp
	for _, n := range f.names {
		o := f.subs[n]
		if n == rs.Subsystem || len(o.pending) == 0 || o.pending[0].Timestamp > last || o.pending[len(o.pending)-1].Timestamp < first {
			continue
		}
		j := sort.Search(len(o.pending), func(k int) bool { return o.pending[k].Timestamp >= first })
		for i := 0; i < len(ups) && j < len(o.pending); {
			a, b := ups[i].Timestamp, o.pending[j].Timestamp
			switch {
			case a < b:
				i++
			case a > b:
				j++
			default:
				return fmt.Errorf("record set %s/%d: update %d of %d (volume %q) is stamped %d (%s), as is an update of subsystem %s (volume %q, its update sequence number %d): "+
					"one timer stamps every subsystem's writes, never twice alike: %w",
					rs.Subsystem, rs.Seq, lo+i+1, len(rs.Updates), ups[i].Volume, a, stampString(a), n, o.pending[j].Volume, o.pending[j].Seq, ErrOutOfOrder)
			}
		}
	}
	return nil
}

func stampString(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func (f *Former) accept(s *subsystem, rs *recordset.RecordSet) {
	s.next = rs.Seq + 1
	// After a restart of the secondary the primary resends the record set
	// that was partly journaled, possibly re-formed into several; their
	// updates at or before the consistency time are already in a group
	// (check let through no other).
	var highest int64
	keep := 0
	for _, u := range rs.Updates {
		if u.Timestamp > f.time {
			keep++
		}
		highest = max(highest, u.Timestamp)
	}
	switch {
	case keep == len(rs.Updates) && len(s.pending) == 0:
		// The usual case, a steady stream: the set's updates are the
		// pending ones as they came, in order, and are taken without a
		// copy (100 bytes an update, and under small writes new memory
		// for every set). Its capacity is clipped so that the next set's
		// updates are appended to a copy, never written past these; Form
		// and the groups read them only.
		s.pending = rs.Updates[:keep:keep]
	case keep > 0:
		s.pending = slices.Grow(s.pending, keep)
		for _, u := range rs.Updates {
			if u.Timestamp > f.time {
				s.pending = append(s.pending, u)
			}
		}
	}
	if keep > 0 {
		s.last = max(s.last, highest)
	}
	if rs.Horizon > s.horizon {
		s.horizon = rs.Horizon
	}
	if highest > f.start || rs.Horizon > f.start {
		s.repeat = false
	}
	s.accepted = append(s.accepted, received{seq: rs.Seq, highest: highest})
}

// Heartbeat takes an idle subsystem's report that its record sets through
// seq hold every update it stamped at or before horizon. It raises the
// subsystem's horizon only if every record set through seq is accepted.
func (f *Former) Heartbeat(subsystem string, seq uint64, horizon int64) error {
	s, ok := f.subs[subsystem]
	if !ok {
		return fmt.Errorf("heartbeat of unknown subsystem %q: %w", subsystem, ErrForeign)
	}
	if seq >= s.next {
		// Record sets it counts on are missing: it says nothing yet.
		return nil
	}
	if horizon > s.horizon {
		s.horizon = horizon
	}
	if horizon > f.start {
		// As for a record set with this horizon (accept): any later
		// record set holds only updates stamped after it.
		s.repeat = false
	}
	return nil
}

// Laggard returns the subsystem whose horizon holds the consistency time back,
// and that horizon.
func (f *Former) Laggard() (string, int64) {
	name, h := "", int64(0)
	for _, n := range f.names {
		if s := f.subs[n]; name == "" || s.horizon < h {
			name, h = n, s.horizon
		}
	}
	return name, h
}

// Form returns the next consistency group, or false if the consistency time has
// not advanced. A group may hold no updates: the time still advanced.
func (f *Former) Form() (*Group, bool) {
	if len(f.subs) == 0 {
		return nil, false
	}
	_, ct := f.Laggard()
	if ct <= f.time {
		return nil, false
	}
	var lists [][]recordset.Update
	total := 0
	for _, n := range f.names {
		s := f.subs[n]
		k := sort.Search(len(s.pending), func(i int) bool { return s.pending[i].Timestamp > ct })
		if k > 0 {
			lists = append(lists, s.pending[:k])
			total += k
			rest := make([]recordset.Update, len(s.pending)-k)
			copy(rest, s.pending[k:])
			s.pending = rest
		}
		for len(s.accepted) > 0 && s.accepted[0].highest <= ct {
			s.through = s.accepted[0].seq
			s.accepted = s.accepted[1:]
		}
	}
	f.time = ct
	return &Group{Time: ct, Through: f.Through(), Updates: merge(lists, total)}, true
}

// merge interleaves per-subsystem lists, each already in timestamp order.
func merge(lists [][]recordset.Update, total int) []recordset.Update {
	if len(lists) == 1 {
		return lists[0]
	}
	out := make([]recordset.Update, 0, total)
	idx := make([]int, len(lists))
	for len(out) < total {
		best := -1
		for i, l := range lists {
			if idx[i] < len(l) && (best < 0 || l[idx[i]].Timestamp < lists[best][idx[best]].Timestamp) {
				best = i
			}
		}
		out = append(out, lists[best][idx[best]])
		idx[best]++
	}
	return out
}
