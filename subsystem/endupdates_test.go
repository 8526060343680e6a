package subsystem

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"duplex/bitmap"
)

// TestAnUpdateHeldAsItsVolumesUpdatesEndNeverReachesIt: a write
// waits for its region's mark (the activity log's disk slow) while the
// site's stop asks for the volume's updates to end, and the mark ends
// just after. The stop closes the volume once none is under way, and
// lets its LOCK go once the close has ended: a write that reached the
// volume after that would land under the next site, which read the
// volume before it. The write is refused, never acknowledged, and leaves
// nothing captured or counted; a suspended pair's write likewise.
func TestAnUpdateHeldAsItsVolumesUpdatesEndNeverReachesIt(t *testing.T) {
	for _, suspended := range []bool{false, true} {
		name := "duplex"
		if suspended {
			name = "suspended"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, 1<<20)
			al := &countingLog{}
			f.ss.SetActivityLog(al)
			if suspended {
				f.ss.Suspend("v0", bitmap.New(volSize, 4096))
			}
			var reached atomic.Bool
			f.ss.SetBeforeVolumeWrite(func(string) { reached.Store(true) })
			// The mark ends once the updates have: the stop closes the
			// volume then.
			ended := make(chan bool, 1)
			mark := func(bool) {
				select {
				case <-f.ss.EndUpdates("v0"):
					ended <- true
				case <-time.After(5 * time.Second):
					ended <- false
				}
			}
			if suspended {
				al.stickHook = func() { mark(false) }
			} else {
				al.hook = mark
			}
			err := f.ss.Write(context.Background(), "v0", bytes.Repeat([]byte{0x6c}, 4096), 8192)
			if !<-ended {
				t.Fatal("the volume's updates have not ended, the one write still in its mark")
			}
			if reached.Load() {
				t.Error("a write held in its mark as its volume's updates ended reached the volume")
			}
			if !errors.Is(err, ErrUpdatesEnded) {
				t.Errorf("a write refused once its volume's updates ended returned %v, want ErrUpdatesEnded", err)
			}
			if got := readVol(t, f.vols["v0"], 8192, 4096); !bytes.Equal(got, make([]byte, 4096)) {
				t.Error("the volume holds a write made after its updates ended")
			}
			if us, _, _ := f.ss.Drain(); len(us) != 0 {
				t.Errorf("captured %d updates of a write refused", len(us))
			}
			if n := al.outstanding(); n != 0 {
				t.Errorf("the activity log holds %d counts with nothing captured", n)
			}
			if got := f.side.Stats().Used; got != 0 {
				t.Errorf("the sidefile holds %d bytes with nothing captured", got)
			}
		})
	}
}
