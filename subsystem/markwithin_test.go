package subsystem

import (
	"errors"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/timer"
)

// TestAMarkGivenUpForAHungLeaseCapturesNothing: the disk of the common
// timer's lease stops answering, the stamps pass its mark on disk, and a
// write holds the ordering lock while its stamp waits for the lease's
// write. LeaseHung says so once that write has taken the wait, and
// MarkWithin gives its marker up then, capturing nothing; once the disk
// answers, the write is captured and the marker is, stamped after it.
func TestAMarkGivenUpForAHungLeaseCapturesNothing(t *testing.T) {
	const wait = 200 * time.Millisecond
	s, tm, wrote, release := writeHeldByAHungLease(t, wait)
	var err error
	used := s.Sidefile().Stats().Used
	start := time.Now()
	_, err = s.MarkWithin("v0", recordset.Marker{State: recordset.StateCopyEnd}, wait)
	var lh *timer.LeaseHungError
	if !errors.As(err, &lh) {
		t.Fatalf("MarkWithin, the lease hung: %v, want a LeaseHungError", err)
	}
	if took := time.Since(start); took > wait+2*time.Second {
		t.Errorf("MarkWithin given up after %s, want about %s", took, wait)
	}
	if got := s.Sidefile().Stats().Used; got != used {
		t.Errorf("the sidefile, the marker given up: %d bytes used, was %d", got, used)
	}
	release()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	written := tm.Last()
	ts, err := s.MarkWithin("v0", recordset.Marker{State: recordset.StateCopyEnd}, wait)
	if err != nil || ts <= written {
		t.Fatalf("MarkWithin once the disk answered: %d, %v; want a stamp after the write's (at or before %d)", ts, err, written)
	}
}
