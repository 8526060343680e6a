package secondary

import (
	"errors"
	"fmt"
)

// ErrViewFull is wrapped by the error of a Reserve past the memory a read
// view may hold.
var ErrViewFull = errors.New("the read view's memory bound is reached")

// Reserve says whether the view can hold n bytes more of memory its owner
// keeps for it (a failover drill's index of its writes) without passing
// the bound of one view (MaxViewBytes), which its index of the before
// images counts against too. It holds nothing: Charge counts what the
// owner then took. Past the bound it fails with ErrViewFull, leaving the
// view readable; a view given up fails with its reason (ErrViewGone).
func (v *ReadView) Reserve(n int64) error {
	r := &v.s.rviews
	r.mu.Lock()
	defer r.mu.Unlock()
	if v.gone != nil {
		return v.gone
	}
	if bound := r.viewBound(); v.held+n > bound {
		return fmt.Errorf("the view of group %d holds %d KiB of index in memory, of the before images and its writes, and %d KiB more could pass the %d KiB one view may hold: %w",
			v.Group, v.held>>10, n>>10, bound>>10, ErrViewFull)
	}
	return nil
}

// Charge counts n bytes (fewer with n < 0) its owner holds for the view
// against the view's bound and the budget of all views, as the view's own
// index is: past the budget, the views holding the most are given up.
func (v *ReadView) Charge(n int64) { v.s.rviews.charge(v, n) }

// charge is Charge, returning why v is given up, if it is.
func (r *readViews) charge(v *ReadView, n int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v.gone != nil {
		return v.gone
	}
	v.held += n
	r.trim()
	return v.gone
}

// Held is the memory counted against the view's bound.
func (v *ReadView) Held() int64 {
	r := &v.s.rviews
	r.mu.Lock()
	defer r.mu.Unlock()
	return v.held
}
