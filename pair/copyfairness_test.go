package pair

import (
	"errors"
	"strings"
	"testing"
)

// TestACopyThatKeepsFailingDoesNotHoldTheOthers: every copy of pair a fails
// with an error that is not the volume's (a transient fault that comes back
// each time). Pair b, after it in the configuration, still copies and
// becomes duplex, while a stays pending with all its regions to copy,
// status saying why, and is tried again once its wait is over.
func TestACopyThatKeepsFailingDoesNotHoldTheOthers(t *testing.T) {
	r := newRig(t, 4*twinRegion, 8<<20, "a", "b")
	clock := r.freezeClock()
	refused := errors.New("connection reset by peer")
	r.refuseCopiesOf("a", refused)
	r.steps(50)
	if b := r.pair("b"); b.State != Duplex {
		t.Fatalf("pair b, pair a's copy failing each time: %+v, want duplex", b)
	}
	a := r.pair("a")
	if a.State != Pending || a.Copied != 0 {
		t.Fatalf("pair a, its copy failing each time: %+v, want pending, nothing copied", a)
	}
	if got := r.pendingRegions("a").Count(); got != 4 {
		t.Fatalf("pair a: %d regions left to copy, want all 4", got)
	}
	if !strings.Contains(a.CopyFailing, refused.Error()) {
		t.Fatalf("pair a: status says %q of its copy, want its error", a.CopyFailing)
	}
	r.ss.mu.Lock()
	tries := r.ss.tries["a"]
	r.ss.mu.Unlock()
	if got := tries; got != 1 {
		t.Fatalf("pair a's copy tried %d times, its wait not over, want 1", got)
	}
	r.refuseCopiesOf("", nil)
	clock.by(copyRetryFirst)
	r.settle()
}

// refuseCopiesOf has every copy of vol fail with err, before anything is
// captured; err nil: none fails.
func (r *rig) refuseCopiesOf(vol string, err error) {
	r.ss.mu.Lock()
	defer r.ss.mu.Unlock()
	if err == nil {
		r.ss.refuses = nil
		return
	}
	r.ss.refuses = func(v string, _ int64) error {
		if v == vol {
			return err
		}
		return nil
	}
}
