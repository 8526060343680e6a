package secondary

import (
	"strings"
	"testing"

	"duplex/apply"
	"duplex/disk"
)

// stateFileRefused is a fault of the secondary w's state file: its
// rename over the old one fails, as on a disk that refuses writes there,
// until cleared.
func stateFileRefused(w *rig) []disk.Fault {
	return []disk.Fault{{Op: disk.OpRename, Under: w.config().StatePath, Err: disk.EIO}}
}

// TestAStateFileACheckpointCouldNotWriteIsWrittenOnAnIdleSession: the
// checkpoint after the groups that waited for a primary were applied at its
// link could not write the state file; nothing is journaled after it. It is
// tried again on a backoff all the same, and once the disk works again the
// state file names the groups applied, with no group to come. Before, it
// was written only at the next group's checkpoint or at Close: on an idle
// session, a kill meanwhile replayed the groups again from the old state.
func TestAStateFileACheckpointCouldNotWriteIsWrittenOnAnIdleSession(t *testing.T) {
	r := checkpointFailingAfterTheWaitingGroups(t, stateFileRefused)
	path := r.config().StatePath
	if st, err := apply.ReadState(path); err != nil || st.Group >= r.last {
		t.Fatalf("the state file, its rename refused, names group %d (%v): want one before %d", st.Group, err, r.last)
	}
	r.in.Clear()
	waitFor(t, "the state file to name the groups applied with no group to come", func() bool {
		st, err := apply.ReadState(path)
		return err == nil && st.Group == r.last
	})
	waitFor(t, "the log to say the state file was written", func() bool {
		return strings.Contains(r.logs.String(), "recorded the groups applied that a checkpoint could not record")
	})
	if st := r.sec.Stats(); st.JournaledGroup != r.last {
		t.Errorf("journaled %d, want %d: a group came", st.JournaledGroup, r.last)
	}
}

// TestWhatACheckpointOwesShowsInStats: while the state file's write, or
// then the journal's release, is owed and retried, Stats says which, since
// when and at what cost, and says nothing once it is done. Before, only
// the log's first failure told of either: a release failing for good was
// retried every minute until the secondary closed, unseen in its status.
func TestWhatACheckpointOwesShowsInStats(t *testing.T) {
	r := checkpointFailingAfterTheWaitingGroups(t, func(w *rig) []disk.Fault {
		return append(stateFileRefused(w), releaseRefused(w)...)
	})
	owed := r.sec.Stats().CheckpointOwed
	for _, want := range []string{"the state file could not record the groups applied", "input/output error", "at most every 1m0s", "fsync of the volumes"} {
		if !strings.Contains(owed, want) {
			t.Errorf("with the state file's write refused, Stats says %q owed: want %q in it", owed, want)
		}
	}
	// The state file written, its release still refused.
	r.in.Clear()
	for _, f := range releaseRefused(r.rig) {
		r.in.Inject(f)
	}
	waitFor(t, "the state file written, the journal's release owed", func() bool {
		return strings.Contains(r.sec.Stats().CheckpointOwed, "the journal's release of its applied segments through group 5 has failed")
	})
	if owed := r.sec.Stats().CheckpointOwed; !strings.Contains(owed, "a removal and an fsync of the journal's directory") {
		t.Errorf("with the journal's release refused, Stats says %q owed: want its cost in it", owed)
	}
	r.in.Clear()
	waitFor(t, "nothing owed once the disk works again", func() bool {
		st := r.sec.Stats()
		return st.CheckpointOwed == "" && st.JournalBytes < r.held
	})
}
