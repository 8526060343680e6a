package secondary

import (
	"errors"
	"fmt"
	"sync"

	"duplex/apply"
	"duplex/consistency"
	"duplex/history"
	"duplex/recordset"
)

// MaxViewBytes bounds the memory one read view holds: the before images of
// the data applied since it was pinned, or only their index for a view
// that spills them to a scratch file (PinSpilled). A view past it is no
// longer readable.
const MaxViewBytes = 256 << 20

// ViewsBudget bounds what the open read views hold together, counting an
// image shared by several views once per view: past it, the views holding
// the most (the oldest) are given up first. Without it, each connection
// left open would hold up to MaxViewBytes.
const ViewsBudget = 1 << 30

// ErrViewGone is wrapped by a read of a view that can no longer be served.
var ErrViewGone = errors.New("read view no longer held")

// ReadView reads the volumes as of one applied group, while later groups
// are applied: every read of it sees that one state. The secondary keeps,
// for each open view, the before image of every byte applied since it was
// pinned (first one kept), and lays them over the volumes' current content.
type ReadView struct {
	s     *Secondary
	Group uint64
	Time  int64
	// over's overlays are added to under s.view's write lock (before a
	// group is applied) and read under its read lock; over, held, gone,
	// and while PinAt opens it Group and Time, are set under rviews.mu too
	// (a view is given up when another is pinned).
	over map[string]*history.Overlay
	held int64
	gone error
	// spill, if set, takes the data of the view's before images: held
	// then counts only their index, and spill's limit bounds the data.
	spill *history.Scratch
}

type readViews struct {
	mu    sync.Mutex
	views map[*ReadView]struct{}
	// budget replaces ViewsBudget, and maxView MaxViewBytes, when set
	// (tests).
	budget, maxView int64
}

// Pin opens a read view at the group the volumes hold now. Close it when
// done: until then each group applied keeps its before images for it.
func (s *Secondary) Pin() (*ReadView, error) { return s.PinSpilled(nil) }

// PinSpilled is Pin for a view that keeps the data of its before images in
// sc (nil: in memory), so that it outlives any amount of change the
// scratch file holds: a failover drill's.
func (s *Secondary) PinSpilled(sc *history.Scratch) (*ReadView, error) {
	s.view.RLock()
	defer s.view.RUnlock()
	if err := s.readsRefused(); err != nil {
		return nil, fmt.Errorf("secondary: no read view: %w", err)
	}
	st := s.viewedState()
	return s.pinLocked(st.Group, st.Time, map[string]*history.Overlay{}, 0, sc), nil
}

// PinAt opens a read view at the newest point at or before t (Unix ns)
// that the history holds (a group, or a step of one), the one RecoverTo
// would take the volumes back to: the undo of what was applied after it
// is read into memory (MaxViewBytes at most) and laid over the volumes,
// which stay as they are. Views of the same t see the same point,
// whichever volume they read. A t at or after the applied group's time
// opens a view of it, as Pin does.
//
// Applying goes on while the undo is read (seconds, for a window of GiBs):
// the view is pinned at the applied group first, so that it keeps the
// before images of every group applied meanwhile as any view does, and
// the undo, of the older groups, is then laid over them. A block reads as
// the undo of the oldest group after the point that wrote it, else as it
// was when the view was pinned, else as the volume holds it now.
func (s *Secondary) PinAt(t int64) (*ReadView, error) { return s.PinAtSpilled(t, nil) }

// PinAtSpilled is PinAt for a view that keeps the data of its before
// images in sc (nil: in memory), those of the undo read when it opens too.
func (s *Secondary) PinAtSpilled(t int64, sc *history.Scratch) (*ReadView, error) {
	s.view.RLock()
	// The history is let go (closeHistory) under the lock's write side:
	// taken now, it is read from below without the lock.
	h := s.hist
	if h == nil {
		s.view.RUnlock()
		return nil, fmt.Errorf("secondary: a read view of a past time: %w (set [secondary] history)", ErrNoHistory)
	}
	if err := s.readsRefused(); err != nil {
		s.view.RUnlock()
		return nil, fmt.Errorf("secondary: no read view: %w", err)
	}
	cur := s.viewedState()
	p, err := s.pointAt(t, cur)
	if err != nil {
		s.view.RUnlock()
		return nil, err
	}
	// A group's undo is captured under the lock's write side before the
	// group is applied: every record held now is of a group the volumes
	// hold (or part of one, through a Gate's limit), and those captured
	// from now on are of groups whose before images the view keeps.
	through, _ := h.Newest()
	v := s.pinLocked(cur.Group, cur.Time, map[string]*history.Overlay{}, 0, sc)
	s.view.RUnlock()
	if p.Group == cur.Group && p.Time == cur.Time {
		return v, nil
	}
	// Held from Trim while it is read: a checkpoint's trim of the
	// window's old end (or a release's retry) would otherwise fail the
	// view part-way through an undo of GiBs. One trimmed since pointAt
	// is refused as a time outside the window.
	release, err := h.Hold(p)
	if err != nil {
		v.Close()
		if errors.Is(err, history.ErrOutside) {
			return nil, windowError(h, t, cur)
		}
		return nil, fmt.Errorf("secondary: a read view as of %s (group %d): %w", fmtTime(p.Time), p.Group, err)
	}
	defer release()
	if s.testPinAtReading != nil {
		s.testPinAtReading()
	}
	// What the undo takes counts as it is read: views opened at once
	// hold it all before any is merged.
	over, err := h.Overlays(p, through, s.rviews.viewBound(), sc, func(n int64) error { return s.rviews.charge(v, n) })
	if err == nil && s.testPinAtRead != nil {
		s.testPinAtRead()
	}
	if err == nil {
		err = s.rviews.layUnder(v, over, p)
	}
	if err != nil {
		v.Close()
		if errors.Is(err, history.ErrOutside) {
			return nil, windowError(h, t, cur)
		}
		// Past its bound or the views' budget (holding the most), or
		// its scratch file full: refused now rather than failing its
		// first read.
		return nil, fmt.Errorf("secondary: a read view as of %s (group %d): %w", fmtTime(p.Time), p.Group, err)
	}
	return v, nil
}

// layUnder makes v, pinned at the applied group, a view of p: what it
// kept of the groups applied since it was pinned goes under over, the
// history's undo of the groups from p to the pinned one. It fails if v
// is given up, now or already.
func (r *readViews) layUnder(v *ReadView, over map[string]*history.Overlay, p history.Point) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v.gone != nil {
		return v.gone
	}
	for name, o := range v.over {
		h := over[name]
		if h == nil {
			over[name] = o
			continue
		}
		if err := h.Under(o); err != nil {
			v.gone, v.over = fmt.Errorf("%w: %w", ErrViewGone, err), nil
			return v.gone
		}
	}
	var held int64
	for _, o := range over {
		held += o.Bytes()
	}
	v.over, v.held, v.Group, v.Time = over, held, p.Group, p.Time
	if bound := r.viewBound(); held > bound {
		v.gone = fmt.Errorf("%w: the view of group %d would hold more than %d MiB changed since it: %w", ErrViewGone, p.Group, bound>>20, history.ErrTooLarge)
		v.over = nil
		return v.gone
	}
	r.trim()
	return v.gone
}

// PointAt is the point a view of time t (Unix ns) reads, as PinAt opens
// it: the newest point at or before t the history holds (a group, or a
// step of one), or the applied group for a time at or after it.
func (s *Secondary) PointAt(t int64) (history.Point, error) {
	// closeHistory lets the history go under the lock's write side.
	s.view.RLock()
	defer s.view.RUnlock()
	if s.hist == nil {
		return history.Point{}, fmt.Errorf("secondary: a past time: %w (set [secondary] history)", ErrNoHistory)
	}
	return s.pointAt(t, s.viewedState())
}

// pointAt is PointAt, cur being what the volumes hold (viewedState). A
// point of the group after cur's, a step before the Gate's limit, is one:
// its undo was captured whole before its first part was applied.
func (s *Secondary) pointAt(t int64, cur apply.State) (history.Point, error) {
	if t >= cur.Time {
		return history.Point{Group: cur.Group, Time: cur.Time}, nil
	}
	p, ok := s.hist.At(t)
	if !ok || p.Group > cur.Group+1 {
		return history.Point{}, windowError(s.hist, t, cur)
	}
	return p, nil
}

// viewedState is the applied state as a reader of the volumes finds them:
// with part of the next group applied through a coupled Gate's limit, as
// of the limit, the time through which they hold every update. With s.view
// held no part is applied before the caller is done with it.
func (s *Secondary) viewedState() apply.State {
	s.posMu.Lock()
	defer s.posMu.Unlock()
	st := s.durable
	st.Through = maps(st.Through)
	st.Time = max(st.Time, s.gated.partial)
	return st
}

// pinLocked registers a view. Called with s.view held.
func (s *Secondary) pinLocked(group uint64, t int64, over map[string]*history.Overlay, held int64, sc *history.Scratch) *ReadView {
	v := &ReadView{s: s, Group: group, Time: t, over: over, held: held, spill: sc}
	s.rviews.mu.Lock()
	if s.rviews.views == nil {
		s.rviews.views = map[*ReadView]struct{}{}
	}
	s.rviews.views[v] = struct{}{}
	s.rviews.trim()
	s.rviews.mu.Unlock()
	return v
}

// Close releases the view.
func (v *ReadView) Close() error {
	v.s.rviews.mu.Lock()
	delete(v.s.rviews.views, v)
	v.s.rviews.mu.Unlock()
	return nil
}

// ReadAt reads vol as of the view's group.
func (v *ReadView) ReadAt(vol string, p []byte, off int64) error {
	s := v.s
	src, ok := s.cfg.Volumes[vol]
	if !ok {
		return fmt.Errorf("secondary: no volume %q", vol)
	}
	s.view.RLock()
	defer s.view.RUnlock()
	// A view is given up (trim) under rviews.mu alone when another is
	// pinned; its overlays change only under s.view's write lock.
	s.rviews.mu.Lock()
	gone, o := v.gone, v.over[vol]
	s.rviews.mu.Unlock()
	if gone != nil {
		return gone
	}
	if err := s.readsRefused(); err != nil {
		return fmt.Errorf("secondary: volume %s unreadable: %w", vol, err)
	}
	if err := src.ReadAt(p, off); err != nil {
		return err
	}
	if o != nil {
		if err := o.ReadOver(p, off); err != nil {
			return fmt.Errorf("secondary: read view of group %d: %w", v.Group, err)
		}
	}
	return nil
}

// Gone is why the view can no longer be read, nil while it can.
func (v *ReadView) Gone() error {
	v.s.rviews.mu.Lock()
	defer v.s.rviews.mu.Unlock()
	return v.gone
}

// keepForViews gives every open view the before images of what g is about
// to overwrite. Called with s.view held for writing, before g is applied.
func (s *Secondary) keepForViews(g *consistency.Group) error {
	s.rviews.mu.Lock()
	defer s.rviews.mu.Unlock()
	if !s.rviews.live() {
		return nil
	}
	var ranges []history.Range
	for _, u := range g.Updates {
		switch u.Kind {
		case recordset.KindWrite, recordset.KindCopy:
			ranges = append(ranges, history.Range{Volume: u.Volume, Offset: u.Offset, Length: uint64(len(u.Data))})
		case recordset.KindZeroes, recordset.KindTrim:
			ranges = append(ranges, history.Range{Volume: u.Volume, Offset: u.Offset, Length: u.Length})
		}
	}
	if len(ranges) == 0 {
		return nil
	}
	// Each image goes to the views as it is read, and a view is given up
	// as soon as it passes its bound: a group larger than the bound (a
	// trim of a whole volume) is never read into memory whole.
	err := history.EachBeforeImage(ranges, s.sources, func(e history.Extent) bool {
		for v := range s.rviews.views {
			if v.gone != nil {
				continue
			}
			o := v.over[e.Volume]
			if o == nil {
				o = history.NewSpilledOverlay(v.spill)
				v.over[e.Volume] = o
			}
			before := o.Bytes()
			if err := o.Add(e); err != nil {
				// Its scratch file is full, or failed: the view lacks
				// part of the past now.
				v.gone = fmt.Errorf("%w: the view of group %d cannot keep what changed since it was opened: %w", ErrViewGone, v.Group, err)
				v.over = nil
				s.log.Warn("read view given up: its reads fail from now on", "group", v.Group, "reason", err)
				continue
			}
			v.held += o.Bytes() - before
			if bound := s.rviews.viewBound(); v.held > bound && v.spill != nil {
				// A drill's: the scratch file holds the bytes.
				v.gone = fmt.Errorf("%w: the view of group %d would hold more than %d MiB of index in memory, of the before images of what changed since it was opened and of a drill's writes",
					ErrViewGone, v.Group, bound>>20)
				v.over = nil
			} else if v.held > bound {
				v.gone = fmt.Errorf("%w: the view of group %d would hold more than %d MiB changed since it was opened: reconnect", ErrViewGone, v.Group, bound>>20)
				v.over = nil
			}
		}
		s.rviews.trim()
		return s.rviews.live()
	})
	if err != nil {
		return fmt.Errorf("secondary: read views: %w", err)
	}
	s.rviews.trim()
	return nil
}

// viewBound is the memory one view may hold.
func (r *readViews) viewBound() int64 {
	if r.maxView != 0 {
		return r.maxView
	}
	return MaxViewBytes
}

// live says whether a view is open and not given up. Called with mu held.
func (r *readViews) live() bool {
	for v := range r.views {
		if v.gone == nil {
			return true
		}
	}
	return false
}

// trim gives up the views holding the most until those left are within the
// budget. Called with mu held.
func (r *readViews) trim() {
	budget := r.budget
	if budget == 0 {
		budget = ViewsBudget
	}
	var total int64
	for v := range r.views {
		if v.gone == nil {
			total += v.held
		}
	}
	for total > budget {
		var most *ReadView
		for v := range r.views {
			if v.gone == nil && (most == nil || v.held > most.held) {
				most = v
			}
		}
		most.gone = fmt.Errorf("%w: the read views open hold more than %d MiB changed since they were opened, "+
			"and the view of group %d holds the most: reconnect", ErrViewGone, budget>>20, most.Group)
		most.over = nil
		total -= most.held
	}
}
