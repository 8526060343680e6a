package pair

import (
	"testing"
	"time"

	"duplex/recordset"
)

// blockingDropMover is a memMover whose Drop waits until release, as the
// mover's waits for a cut under way (which may wait for a copy's read of a
// primary volume).
type blockingDropMover struct {
	*memMover
	entered, release chan struct{}
}

func (m *blockingDropMover) Drop(mark func(recordset.Update)) {
	close(m.entered)
	<-m.release
	m.memMover.Drop(mark)
}

// TestStatusAndOperationsDoNotWaitForTheSessionsDrop: while the session's
// own suspension waits for the mover's Drop, status and pair operations
// are answered; a resume asked meanwhile waits for the dropped updates to
// be in the pair's bitmap, and its resync copies them.
func TestStatusAndOperationsDoNotWaitForTheSessionsDrop(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a", "b")
	r.settle()
	r.write("a", 0, 4096) // captured and held: the Drop gives it up
	mv := &blockingDropMover{memMover: r.mv, entered: make(chan struct{}), release: make(chan struct{})}
	r.mg.mover = mv
	r.mv.setConnected(false)
	suspended := make(chan bool, 1)
	go func() { suspended <- r.mg.suspendSession(reasonLinkDown, false) }()
	<-mv.entered
	within := func(what string, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			f()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			close(mv.release)
			t.Fatalf("%s waits for the session's Drop", what)
		}
	}
	within("status", func() {
		for _, p := range r.mg.Pairs() {
			if p.State != Suspended {
				t.Errorf("pair %s %s while the session suspends itself, want suspended", p.Volume, p.State)
			}
		}
	})
	within("a suspend", func() {
		if err := r.mg.Suspend("b"); err != nil {
			t.Error(err)
		}
	})
	// The link is back: a resume asked now must not take a's bitmap before
	// the write dropped is in it.
	r.mv.setConnected(true)
	resumed := make(chan error, 1)
	go func() { resumed <- r.mg.Resume("a") }()
	time.Sleep(10 * time.Millisecond) // let the resume be asked while the Drop waits
	close(mv.release)
	if !<-suspended {
		t.Fatal("the session's suspension suspended nothing")
	}
	if err := <-resumed; err != nil {
		t.Fatal(err)
	}
	if p := r.pair("a"); p.State != Pending || !marked(r.pendingRegions("a"), 0) {
		t.Fatalf("pair a resumed during the session's Drop: %+v, regions %v: want its resync to copy the write dropped", p, r.pendingRegions("a"))
	}
}
