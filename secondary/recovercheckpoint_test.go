package secondary

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"duplex/apply"
)

// A checkpoint may run while recover --at takes the volumes back: the
// retry of a state file's write a checkpoint could not make (retryRelease),
// on its timer, which takes none of RecoverTo's locks but the checkpoint's.
// RecoverTo recorded its point as the group the state file names, and
// then, apart, as the applied group: a checkpoint between the two found
// them apart and wrote the applied group it read, the one before, over
// the state file that named the point. Killed then, with the volumes
// taken back and the undo after the point voided, the secondary opened
// at the group before, over volumes at the point, and a run again left
// them there. The state file must name the point once RecoverTo returns,
// and the volumes opened again must be at the group it names.
func TestACheckpointDuringRecoverToLeavesItsPointRecorded(t *testing.T) {
	const n = 5
	dir, hist := fencedWithGroups(t, n)
	sec, v := openStopped(t, dir, hist)
	defer v.Close()
	// A checkpoint that could not write the state file: retried on its
	// timer, any time.
	sec.ckMu.Lock()
	sec.owedRecordLocked(errors.New("state file: input/output error"))
	sec.ckMu.Unlock()
	ran := make(chan struct{})
	sec.testRecorded = func() {
		go func() {
			defer close(ran)
			sec.ckMu.Lock()
			sec.owed.record = true
			sec.ckMu.Unlock()
			sec.retryRelease()
		}()
		// The retry runs here, or waits for RecoverTo to let the
		// checkpoint's lock go.
		select {
		case <-ran:
		case <-time.After(200 * time.Millisecond):
		}
	}
	st, err := sec.RecoverTo(int64(2 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	<-ran
	if st.Group != 2 {
		t.Fatalf("recovered to group %d, want 2", st.Group)
	}
	// What a kill -9 now leaves: the state file as it is.
	onDisk, err := apply.ReadState(sec.cfg.StatePath)
	if err != nil {
		t.Fatal(err)
	}
	if onDisk.Group != st.Group {
		t.Errorf("RecoverTo returned group %d, a checkpoint ran meanwhile: the state file names group %d", st.Group, onDisk.Group)
	}
	if got, want := regions(t, v, n), groupRegions(st.Group, n); !bytes.Equal(got, want) {
		t.Fatalf("recovered to group %d: regions % x, want % x", st.Group, got, want)
	}
}
