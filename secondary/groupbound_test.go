package secondary

import (
	"testing"

	"duplex/config"
)

// Every update of a consistency group is still held in a primary sidefile,
// where it costs at least its journal encoding, so the config's bound on all
// sidefiles together keeps every group within what the journal accepts.
func TestSidefileBoundKeepsGroupsJournalable(t *testing.T) {
	const groupHeaderRoom = 64 << 20 // subsystem and volume tables, headers
	if got := int64(config.MaxSidefileTotal) + groupHeaderRoom; got > MaxGroupBytes {
		t.Fatalf("sidefiles of %d bytes in all could form a group larger than MaxGroupBytes %d", got, int64(MaxGroupBytes))
	}
}
