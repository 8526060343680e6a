package pair

import (
	"slices"
	"testing"

	"duplex/recordset"
)

// TestResumeAllRightAfterFirstCopyEndCapturedIsAResync: resume --all of a
// pair whose first copy's end is captured ahead of its suspension is a
// resync over the full copy the secondary will hold, as a resume of that
// pair alone is: announced as its first copy again, the secondary takes the
// volume as never copied, holds nothing for it, and reports it (and recover
// leaves it) not consistent for the whole resync although it holds a full
// copy.
func TestResumeAllRightAfterFirstCopyEndCapturedIsAResync(t *testing.T) {
	mg, mv := firstCopyEndCaptured(t)
	if _, err := mg.SuspendAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := mg.ResumeAll(); err != nil {
		t.Fatal(err)
	}
	got := markers(mv.ship(), "a")
	if want := []recordset.PairState{recordset.StateFirstCopy, recordset.StateCopyEnd, recordset.StateSuspended, recordset.StateResync}; len(got) < 4 || !slices.Equal(got[:4], want) {
		t.Fatalf("markers sent %v, want %v first: resume --all announced the first copy again after the first copy's end", got, want)
	}
}
