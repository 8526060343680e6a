package subsystem

import (
	"errors"
	"testing"
	"time"

	"duplex/timer"
)

// TestAStampGivenUpForAHungLeaseHandsNoneOut: as
// TestAMarkGivenUpForAHungLeaseCapturesNothing, for StampWithin, the
// stamp the pair manager takes in a failed marker's stead: with a write
// holding the ordering lock while its stamp waits for the lease, it is
// given up after about the wait, a LeaseHungError; once the disk answers,
// it is handed out after the write's.
func TestAStampGivenUpForAHungLeaseHandsNoneOut(t *testing.T) {
	const wait = 200 * time.Millisecond
	s, tm, wrote, release := writeHeldByAHungLease(t, wait)
	var err error
	start := time.Now()
	_, err = s.StampWithin(wait)
	var lh *timer.LeaseHungError
	if !errors.As(err, &lh) {
		t.Fatalf("StampWithin, the lease hung: %v, want a LeaseHungError", err)
	}
	if took := time.Since(start); took > wait+2*time.Second {
		t.Errorf("StampWithin given up after %s, want about %s", took, wait)
	}
	release()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	written := tm.Last()
	ts, err := s.StampWithin(wait)
	if err != nil || ts <= written {
		t.Fatalf("StampWithin once the disk answered: %d, %v; want a stamp after the write's (at or before %d)", ts, err, written)
	}
}
