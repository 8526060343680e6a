package secondary

import (
	"testing"
	"time"
)

// TestTheLaterReadingOfTheJournalRoomIsKept: receipts report the last
// reading of the journal's free space, which every reading replaces. A
// reading taken after another on a clock that did not move (two readings
// within its resolution) replaces it too: kept, the earlier one would be
// reported after the acknowledgement that carried the later one, the
// room stepping back for up to freeReadingAge. One taken before the
// reading kept, and stored after it, is older and changes nothing.
func TestTheLaterReadingOfTheJournalRoomIsKept(t *testing.T) {
	var r freeReading
	at := time.Now()
	r.store(1, at, 5)
	r.store(1, at, 7)
	if got, ok := r.cached(1, at); !ok || got != 7 {
		t.Fatalf("after readings of 5 then 7 taken at the same instant, receipts report %d (cached %v), want 7", got, ok)
	}
	r.store(1, at.Add(-time.Millisecond), 3)
	if got, ok := r.cached(1, at); !ok || got != 7 {
		t.Fatalf("a reading taken before the one kept replaced it: receipts report %d (cached %v), want 7", got, ok)
	}
}
