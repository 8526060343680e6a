package control

import "testing"

// TestHistoryAfterAClockStepBack: the status page asks for the samples after
// the t of the last one it holds. Samples are stamped with the wall clock,
// so after the clock steps back (NTP, a VM resumed) every new sample has a
// t before the page's, and the page charts nothing new until the clock
// passes its old time again (for a step of an hour, an hour of frozen
// charts); History's "samples must come in time order" is not something
// the wall clock keeps. A sample taken later must be one a poller that
// holds the earlier sample gets.
func TestHistoryAfterAClockStepBack(t *testing.T) {
	var h History
	h.Add(HistorySample{UnixMilli: 1_000_000, BytesReplicated: 1})
	held := h.Since(0)
	last := held[len(held)-1].UnixMilli
	h.Add(HistorySample{UnixMilli: 1_000_000 - 3_600_000, BytesReplicated: 2}) // the clock went back an hour
	got := h.Since(last)
	if len(got) != 1 || got[0].BytesReplicated != 2 {
		t.Fatalf("a poller holding t=%d gets %v after the clock stepped back: want the new sample", last, got)
	}
}
