package secondary

import (
	"testing"
	"time"

	"duplex/recordset"
)

// A secondary stopped while a view of a past time opens (a drill start --at
// in flight at a shutdown: the control server does not wait for its
// handlers) closes its history under the open, which reads the undo
// without the volumes' lock: the open fails, it never dereferences the
// history the stop let go.
func TestPinAtWhileTheSecondaryCloses(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	r := openGateRigWith(t, dir, nil, historyOf(dir))
	defer r.vol.Close()
	r.sendSet(t, 1, []recordset.Update{blockWrite(2, 1)})
	r.sendSet(t, 2, []recordset.Update{blockWrite(2, 2)})
	waitGate(t, "group 2 applied", func() bool { return r.sec.appliedState().Group == 2 })
	closed := make(chan error, 1)
	r.sec.testPinAtReading = func() {
		r.cancel()
		r.wg.Wait()
		closed <- r.sec.Close()
	}
	v, err := r.sec.PinAt(int64(time.Millisecond))
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err == nil {
		v.Close()
		t.Fatalf("a view of group %d opened on a closed secondary", v.Group)
	}
}

// TestPointAtWhileTheSecondaryCloses: the control server's shutdown does
// not wait for its handlers, so a drill start --at may ask for its point
// as the secondary closes; it gets an error, never a nil history.
func TestPointAtWhileTheSecondaryCloses(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	r := openGateRigWith(t, dir, nil, historyOf(dir))
	defer r.vol.Close()
	r.sendSet(t, 1, []recordset.Update{blockWrite(2, 1)})
	r.sendSet(t, 2, []recordset.Update{blockWrite(2, 2)})
	waitGate(t, "group 2 applied", func() bool { return r.sec.appliedState().Group == 2 })
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r.sec.PointAt(int64(time.Millisecond))
		}
	}()
	r.cancel()
	r.wg.Wait()
	err := r.sec.Close()
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.sec.PointAt(int64(time.Millisecond)); err == nil {
		t.Fatal("a point found on a closed secondary")
	}
}
