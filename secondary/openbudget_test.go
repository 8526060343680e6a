package secondary

import (
	"sync/atomic"
	"testing"
	"time"
)

// The undo a view of a past time reads while it opens is memory the view
// holds: it counts against the views' budget as it is read, not only once
// it is merged. Counted only then, every connection opening NAME@TIME at
// once held up to MaxViewBytes of undo outside the budget, so that many
// concurrent opens took the secondary's memory far past it.
func TestPinAtCountsTheUndoItReadsAgainstTheBudget(t *testing.T) {
	r, _ := threeGroupsWithHistory(t)
	defer r.close(t)

	// A view of group 2 holds group 3's undo, its two blocks, 8 KiB, and
	// their index: the budget is room for one such view, not two.
	const undo = 8 << 10
	at := int64(2500 * time.Microsecond)
	one, err := r.sec.PinAt(at)
	if err != nil {
		t.Fatal(err)
	}
	held := one.Held()
	one.Close()
	budget := held * 3 / 2
	r.sec.rviews.budget = budget

	// counted is what the open views count held; live, how many are not
	// given up.
	counted := func() (n int64, live int) {
		r.sec.rviews.mu.Lock()
		defer r.sec.rviews.mu.Unlock()
		for v := range r.sec.rviews.views {
			if v.gone == nil {
				n += v.held
				live++
			}
		}
		return n, live
	}
	read, release := make(chan struct{}), make(chan struct{})
	var paused atomic.Bool
	r.sec.testPinAtRead = func() {
		if paused.CompareAndSwap(false, true) {
			close(read)
			<-release
		}
	}
	type pinned struct {
		v   *ReadView
		err error
	}
	a := make(chan pinned, 1)
	go func() {
		v, err := r.sec.PinAt(at)
		a <- pinned{v, err}
	}()
	select {
	case <-read:
	case p := <-a:
		if p.v != nil {
			p.v.Close()
		}
		t.Fatalf("a view of group 2 opened without pausing once it read its undo: %v", p.err)
	}
	if n, _ := counted(); n < undo {
		close(release)
		if p := <-a; p.v != nil {
			p.v.Close()
		}
		t.Fatalf("a view of a past time that read %d KiB of undo counts %d bytes held while it opens: "+
			"opens at once hold their undo outside the views' budget", undo>>10, n)
	}
	// A second open of the same time would take the views past the budget
	// with what the first holds: one of the two is given up.
	v2, err2 := r.sec.PinAt(at)
	close(release)
	p := <-a
	for _, v := range []*ReadView{v2, p.v} {
		if v != nil {
			defer v.Close()
		}
	}
	n, live := counted()
	if n > budget || live > 1 {
		t.Fatalf("two views of group 2 opened at once: %d live, counting %d bytes held, past the budget of %d (errors %v, %v)",
			live, n, budget, p.err, err2)
	}
}
