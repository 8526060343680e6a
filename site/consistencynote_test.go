package site

import (
	"strings"
	"testing"

	"duplex/secondary"
)

// TestConsistencyNoteNamesASuspensionTimeOnlyWhenItIsOne: a volume whose
// suspension is journaled but held unapplied by another volume's resync is
// consistent as of the applied group's time, which is not its suspension's.
func TestConsistencyNoteNamesASuspensionTimeOnlyWhenItIsOne(t *testing.T) {
	held := secondary.VolumeView{State: secondary.StateSuspended, Consistent: true, Time: 10_000}
	if got := consistencyNote("vol1", held, 1); strings.Contains(got, "suspension") || !strings.Contains(got, "(group 1)") {
		t.Errorf("suspension not applied yet: %q, want the applied group's time and number", got)
	}
	applied := held
	applied.Time, applied.AsOfSuspension = 30_005, true
	if got := consistencyNote("vol1", applied, 3); !strings.Contains(got, "consistent as of its suspension time") {
		t.Errorf("suspension applied: %q, want its suspension time", got)
	}
}

// TestConsistencyNoteWhileTheWaitingGroupsAreApplied: a volume whose
// journaled groups waited for a primary without the volume they name, and
// one linked, says they are applied, not that they wait for a primary.
func TestConsistencyNoteWhileTheWaitingGroupsAreApplied(t *testing.T) {
	got := consistencyNote("vol1", secondary.VolumeView{AppliesWaited: true}, 2)
	if !strings.Contains(got, "are applied") || strings.Contains(got, "until a primary links") {
		t.Errorf("while the waiting groups are applied: %q, want it to say they are applied", got)
	}
}
