package pair

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestAStopsSaveThatHangsIsGivenUpAndRenamesNothing: the stop's save of
// the pair state hangs (its disk stopped answering). CloseWithin returns
// once its context ends, saying so, and SaveUnderWay reports the save.
// Once the disk answers, the save given up renames nothing: the state on
// disk stays the one saved while running, not clean.
func TestAStopsSaveThatHangsIsGivenUpAndRenamesNothing(t *testing.T) {
	r, h := heldRig(t)
	r.write("a", 0, 4096)
	h.Arm()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- r.mg.CloseWithin(ctx, true) }()
	select {
	case err := <-closed:
		if !errors.Is(err, ErrSaveHung) {
			t.Errorf("CloseWithin with its save hung: %v, want ErrSaveHung", err)
		}
	case <-time.After(10 * time.Second):
		h.Release()
		t.Fatal("CloseWithin has not returned 10s after its context ended, its save hung")
	}
	if d := r.mg.SaveUnderWay(); d <= 0 {
		t.Errorf("SaveUnderWay with the stop's save hung: %s", d)
	}
	h.Release()
	h.await(t, "the save given up to end", func() bool { return r.mg.SaveUnderWay() == 0 })
	st := savedPersisted(t, filepath.Join(r.dir, "pairs.json"))
	if st.Clean {
		t.Error("the stop's save, given up, saved the state clean once its disk answered")
	}
}

// TestACommandWhoseSaveHangsIsAnsweredInEffectNotYetSaved: the disk of
// the pair state stops answering while the operator suspends a. The
// suspension is answered once SaveWait has passed, in effect, saying it
// is not yet saved; the status reports a suspended at once. Once the
// disk answers, the state on disk says a is suspended.
func TestACommandWhoseSaveHangsIsAnsweredInEffectNotYetSaved(t *testing.T) {
	r, h := heldRig(t)
	r.mg.opts.SaveWait = 200 * time.Millisecond
	h.Arm()
	suspended := make(chan error, 1)
	go func() { suspended <- r.mg.Suspend("a") }()
	select {
	case err := <-suspended:
		if !errors.Is(err, ErrSaveHung) {
			t.Errorf("the suspension with its save hung: %v, want ErrSaveHung", err)
		}
		t.Logf("answered: %v", err)
	case <-time.After(10 * time.Second):
		h.Release()
		t.Fatal("the suspension has not been answered 10s after its save hung")
	}
	if st := r.pair("a").State; st != Suspended {
		t.Errorf("a, its suspension answered not yet saved: %s, want suspended", st)
	}
	h.Release()
	h.await(t, "the suspension's save to end", func() bool { return r.mg.SaveUnderWay() == 0 })
	st := savedPersisted(t, filepath.Join(r.dir, "pairs.json"))
	for _, p := range st.Pairs {
		if p.Volume == "a" && p.State != Suspended {
			t.Errorf("a on disk once the disk answered: %s, want suspended", p.State)
		}
	}
}
