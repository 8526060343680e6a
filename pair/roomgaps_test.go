package pair

import (
	"testing"

	"duplex/journal"
	"duplex/sidefile"
)

// TestResyncRoomCountsTheJournalsGaps: the room the primary asks of the
// secondary's journal for a resync's hold is counted as the journal lays
// records on its disk (journal.RecordSpace): a record of more than 64 KiB,
// as a group of a copy is, may have gaps, up to 6.3 % more than its data.
// The secondary gives a hold up once its free space, net of what its
// journal needs besides (what it reports), is short of RecordSpace of
// the next group; a primary that counts plain bytes starts a resync of a
// large volume the secondary then gives up near its end. Before, roomFor
// counted the bytes alone: for a 4 GiB copy, some 300 MiB short.
func TestResyncRoomCountsTheJournalsGaps(t *testing.T) {
	r := newRig(t, 64*twinRegion, 8<<20, "a")
	for _, size := range []int64{64 * twinRegion, 1 << 30, 4 << 30} {
		regions := int(size / twinRegion)
		r.mg.mu.Lock()
		need := r.mg.roomFor(size, regions)
		r.mg.mu.Unlock()
		// What roomFor counts, each term journaled: the copy (each region
		// an update of its data and its header), the writes made meanwhile
		// (a quarter of it), the sidefile's limit.
		copied := size + int64(regions)*sidefile.EntryOverhead
		held := copied + copied/4 + r.ss.Sidefile().Stats().Limit
		if onDisk := journal.RecordSpace(held); need < onDisk {
			t.Errorf("a resync copying %d bytes in %d regions: the primary asks %d bytes of journal room, the journal takes up to %d "+
				"for what it counts (%d bytes of records): %d short", size, regions, need, onDisk, held, onDisk-need)
		}
	}
}
