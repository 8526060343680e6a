package secondary

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"duplex/disk"
	"duplex/internal/testenv"
	"duplex/recordset"
	"duplex/transport"
)

// releaseFailedRig is a secondary whose checkpoint, after the groups that
// waited for a primary without vol2 were applied at its link, wrote the
// state file and failed to release the journal's segments they fill: the
// journal's disk refuses to remove or rename a file (in, until cleared).
type releaseFailedRig struct {
	*rig
	in   *disk.Injector
	logs *testenv.LogBuffer
	held int64 // the journal's bytes before the release
	last uint64
}

func releaseFailedAfterTheWaitingGroups(t *testing.T) *releaseFailedRig {
	t.Helper()
	return checkpointFailingAfterTheWaitingGroups(t, releaseRefused)
}

// releaseRefused are the faults of the secondary w's journal disk that
// refuse the release of its segments: removals and renames fail.
func releaseRefused(w *rig) []disk.Fault {
	var faults []disk.Fault
	for _, op := range []disk.Op{disk.OpRemove, disk.OpRename} {
		faults = append(faults, disk.Fault{Op: op, Under: w.config().JournalDir, Err: disk.EIO})
	}
	return faults
}

// checkpointFailingAfterTheWaitingGroups is releaseFailedAfterTheWaitingGroups
// with the faults that faults returns for the secondary w injected before
// the link: what of the checkpoint fails is theirs to say.
func checkpointFailingAfterTheWaitingGroups(t *testing.T, faults func(w *rig) []disk.Fault) *releaseFailedRig {
	t.Helper()
	in := disk.NewInjector(nil)
	logs := &testenv.LogBuffer{}
	edit := func(c *Config) {
		// Segments of 1.5 MiB: the groups below fill two.
		c.FS = roomFS{FS: in, free: 8 << 20}
		c.LargestGroup = 1 << 20
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 16 << 20, "vol2": 1 << 20}, subs: []string{"ss1"}, edit: edit}
	r.open()
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy), write("vol1", 0), write("vol2", 0)),
		writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)))
	waitFor(t, "group 2 applied", func() bool { return r.sec.Stats().Group >= 2 })
	gate := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(gate) }) })
	r.sec.targets["vol1"] = gatedTarget{Target: r.sec.targets["vol1"], gate: gate}
	conn = conn.(settledConn).Conn // the applier waits at the gate
	big := func(off uint64) recordset.Update {
		return recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: off, Length: 900 << 10}
	}
	// The applier gated at group 3, two more are handed to it: no later
	// one is sure to be journaled.
	const last = 5
	sendRecordSet(t, conn, writeSet(3, 30_000, filled("vol2", 8192, 2), filled("vol1", 8192, 1), big(3<<20)))
	for k := uint64(4); k <= last; k++ {
		sendRecordSet(t, conn, writeSet(k, int64(k)*10_000, big(k<<20)))
	}
	if reason, acked := answers(t, conn, last-1); acked < last {
		t.Fatalf("acknowledged through group %d, want %d (refusal %q)", acked, last, reason)
	}
	killed := t.TempDir()
	copyFiles(t, r.dir, killed)
	once.Do(func() { close(gate) })
	r.close()

	w := &rig{t: t, dir: killed, sizes: map[string]int64{"vol1": 16 << 20}, subs: []string{"ss1"}, edit: edit}
	w.open()
	t.Cleanup(w.close)
	if st := w.sec.Stats(); st.GroupsWait == "" {
		t.Fatalf("started without vol2, no group waits (applied %d, journaled %d)", st.Group, st.JournaledGroup)
	}
	if segs, _ := os.ReadDir(w.config().JournalDir); len(segs) < 3 { // the lock and two segments
		t.Fatalf("the journal holds %d files, want two segments and the lock", len(segs))
	}
	for _, f := range faults(w) {
		in.Inject(f)
	}
	held := w.sec.Stats().JournalBytes
	without := w.hello()
	without.Instance = 9
	if _, typ, _ := w.dial(without); typ != transport.TypeWelcome {
		t.Fatalf("a primary without vol2: frame type %d, want a welcome:\n%s", typ, logs.String())
	}
	if st := w.sec.Stats(); st.Group != last || st.JournalBytes < held {
		t.Fatalf("after the link: applied %d, journal %d bytes (%d before); want %d applied, nothing released", st.Group, st.JournalBytes, held, last)
	}
	return &releaseFailedRig{rig: w, in: in, logs: logs, held: held, last: last}
}

// TestTheWaitingGroupsCheckpointNamesTheFailedRelease: the log of the
// checkpoint after the groups that waited were applied, which wrote the
// state file and failed to release the journal, says that the release
// failed and the state file records the groups: before, it said the state
// file did not record them.
func TestTheWaitingGroupsCheckpointNamesTheFailedRelease(t *testing.T) {
	r := releaseFailedAfterTheWaitingGroups(t)
	out := r.logs.String()
	if !strings.Contains(out, "the state file records the groups applied, but the checkpoint's release of the journal") ||
		strings.Contains(out, "the state file does not record") {
		t.Errorf("the log does not name the journal's release as what failed, or blames the state file:\n%s", out)
	}
}

// TestAFailedJournalReleaseIsRetriedOnAnIdleSession: nothing is journaled
// after the checkpoint whose release of the journal failed: it is retried
// on a backoff all the same, and once the disk works again the segments
// are released, with no group to come, the failure logged once. Before,
// the journal's space stayed held until the next group.
func TestAFailedJournalReleaseIsRetriedOnAnIdleSession(t *testing.T) {
	r := releaseFailedAfterTheWaitingGroups(t)
	r.in.Clear()
	waitFor(t, "the journal's applied segments released with no group to come", func() bool {
		return r.sec.Stats().JournalBytes < r.held
	})
	waitFor(t, "the log to say the release was done", func() bool {
		return strings.Contains(r.logs.String(), "released the journal's applied segments that a checkpoint could not release")
	})
	if n := strings.Count(r.logs.String(), "release of the journal"); n != 1 {
		t.Errorf("the log names the release's failure %d times, want once:\n%s", n, r.logs.String())
	}
	if st := r.sec.Stats(); st.JournaledGroup != r.last {
		t.Errorf("journaled %d, want %d: a group came", st.JournaledGroup, r.last)
	}
}
