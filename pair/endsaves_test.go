package pair

import (
	"path/filepath"
	"testing"
	"time"
)

// TestEndSavesWaitsForTheSaveUnderWayAndLaterOnesWriteNothing: a stop
// lets the pair state's directory go once EndSaves says no save is under
// way. A save held by its disk holds that until it ends, and a save asked
// for afterwards writes nothing: the directory may be another run's.
func TestEndSavesWaitsForTheSaveUnderWayAndLaterOnesWriteNothing(t *testing.T) {
	r, h := heldRig(t)
	r.mg.opts.SaveWait = 100 * time.Millisecond
	h.Arm()
	suspended := make(chan error, 1)
	go func() { suspended <- r.mg.Suspend("a") }()
	h.await(t, "the suspension's save to be under way", func() bool { return r.mg.SaveUnderWay() > 0 })
	ended := r.mg.EndSaves()
	select {
	case <-ended:
		h.Release()
		t.Fatal("EndSaves said the saves ended with the suspension's save held")
	case <-time.After(200 * time.Millisecond):
	}
	h.Release()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("EndSaves has not said the saves ended 10s after the held one was let go")
	}
	<-suspended
	if err := r.mg.Suspend("b"); err == nil {
		t.Error("the suspension of b after EndSaves says it was saved")
	}
	for _, p := range savedPersisted(t, filepath.Join(r.dir, "pairs.json")).Pairs {
		if p.Volume == "b" && p.State == Suspended {
			t.Error("a save after EndSaves wrote the pair state")
		}
	}
	select {
	case <-r.mg.EndSaves():
	default:
		t.Error("EndSaves with no save under way did not say so at once")
	}
}
