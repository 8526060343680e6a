package secondary

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"duplex/apply"
	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// TestFenceAfterAFailedCheckpointRecordsTheFencedGroup: a checkpoint of
// the applier fails (the state file's rename returns EIO), which stops the
// secondary. recover then fences it. Fence either fails, or returns a
// position that the state file names, so that a restart (kill -9
// included) is at the group the fence reported: a fenced restart applies
// no journaled group after the state file's, so a state file behind the
// fenced group leaves the restarted secondary claiming an older group than
// recover printed, over volumes that hold the newer one.
func TestFenceAfterAFailedCheckpointRecordsTheFencedGroup(t *testing.T) {
	r := newIdentityRig(t)
	// Checkpoint after every group; set before any group reaches the applier.
	r.sec.cfg.CheckpointEvery = 0
	statePath := filepath.Join(r.site, "state.json")
	r.in.Inject(disk.Fault{Op: disk.OpRename, Under: statePath, Err: disk.EIO, Once: true})

	first := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096, Timestamp: 1_000, Data: bytes.Repeat([]byte{0xa1}, 4096)}
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendRecordSet(t, conn, subsystemSet("ss1", 1, 1_000, 2_000, first))
	sendRecordSet(t, conn, subsystemSet("ss2", 1, 0, 2_000))
	if reason, acked := answers(t, conn, 0); acked != 1 {
		t.Fatalf("acknowledged through group %d, want 1 (refusal %q)", acked, reason)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.in.Injected(disk.OpRename) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the applier's checkpoint never wrote the state file within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}

	pos, err := r.sec.Fence()
	if err != nil {
		t.Logf("Fence refused after the failed checkpoint: %v", err)
		return
	}
	stateGroup := stateFileGroup(t, statePath)
	r.crash()
	r.open()
	got := r.sec.Position()
	vol := make([]byte, 4096)
	if err := r.sec.ReadAt("a", vol, 0); err != nil {
		t.Fatal(err)
	}
	if stateGroup != pos.Group || got.Group != pos.Group {
		t.Fatalf("Fence returned group %d without error after the applier's checkpoint failed, but the state file names group %d; "+
			"restarted (fenced), the secondary is at group %d (time %d) while its volume holds group 1's data (byte 0 is %#x)",
			pos.Group, stateGroup, got.Group, got.Time, vol[0])
	}
}

// TestFenceAfterAFailedCheckpointKeepsEveryAcknowledgedGroup: groups 1 and
// 2 are journaled and acknowledged (the primary then frees them) while the
// applier is still on group 1; its checkpoint after group 1 fails (EIO),
// so the applier skips group 2 and the secondary stops. recover then
// fences it. Fence must either fail or fence at a position holding every
// acknowledged group: its doc says what is journaled is applied first, and
// a fenced restart never applies a journaled group again, so a group
// acknowledged but left out of the fence is lost for good.
func TestFenceAfterAFailedCheckpointKeepsEveryAcknowledgedGroup(t *testing.T) {
	r := newIdentityRig(t)
	r.sec.cfg.CheckpointEvery = 0
	statePath := filepath.Join(r.site, "state.json")
	r.in.Inject(disk.Fault{Op: disk.OpRename, Under: statePath, Err: disk.EIO, Once: true})

	first := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096, Timestamp: 1_000, Data: bytes.Repeat([]byte{0xa1}, 4096)}
	second := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: 4096, Timestamp: 3_000, Data: bytes.Repeat([]byte{0xa2}, 4096)}
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	// A reader keeps the applier from applying until both groups are
	// journaled and acknowledged.
	r.sec.view.RLock()
	sendRecordSet(t, conn, subsystemSet("ss1", 1, 1_000, 4_000, first, second))
	sendRecordSet(t, conn, subsystemSet("ss2", 1, 0, 2_000))
	sendRecordSet(t, conn, subsystemSet("ss2", 2, 0, 5_000))
	// Acknowledgements read as they come, not settled: the applier waits.
	reason, acked := answers(t, conn.(settledConn).Conn, 1)
	r.sec.view.RUnlock()
	if acked != 2 {
		t.Fatalf("acknowledged through group %d, want 2 (refusal %q)", acked, reason)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.sec.applyFailure() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the applier's checkpoint did not fail within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}

	pos, err := r.sec.Fence()
	if err != nil {
		t.Logf("Fence refused after the failed checkpoint: %v", err)
		return
	}
	r.crash()
	r.open()
	got := r.sec.Position()
	vol := make([]byte, 8192)
	if err := r.sec.ReadAt("a", vol, 0); err != nil {
		t.Fatal(err)
	}
	if pos.Group < acked || vol[4096] != 0xa2 {
		t.Fatalf("group %d was journaled and acknowledged, yet Fence returned group %d without error after the applier's checkpoint failed; "+
			"restarted (fenced), the secondary is at group %d and its volume lacks group 2's write (byte 4096 is %#x, want 0xa2): an acknowledged write is lost",
			acked, pos.Group, got.Group, vol[4096])
	}
}

// TestFenceRetriedAfterItsCheckpointFailedRecordsTheFencedGroup: Fence's
// own checkpoint fails (EIO on the state file's rename) and Fence says so;
// recover is run again. The second Fence either fails or returns a group
// the state file names: a fenced restart applies no journaled group after
// the state file's, so a state file behind the fence leaves the restarted
// secondary claiming an older group over volumes holding the newer ones.
func TestFenceRetriedAfterItsCheckpointFailedRecordsTheFencedGroup(t *testing.T) {
	r := twoGroupsUncheckpointed(t)
	statePath := filepath.Join(r.site, "state.json")
	r.in.Inject(disk.Fault{Op: disk.OpRename, Under: statePath, Err: disk.EIO, Once: true})
	if _, err := r.sec.Fence(); err == nil {
		t.Fatal("Fence returned no error although its checkpoint's rename failed")
	}
	pos, err := r.sec.Fence()
	if err != nil {
		t.Logf("the second Fence refused: %v", err)
		return
	}
	stateGroup := stateFileGroup(t, statePath)
	r.crash()
	r.open()
	if got := r.sec.Position(); stateGroup != pos.Group || got.Group != pos.Group {
		t.Fatalf("the second Fence returned group %d without error after the first one's checkpoint failed, but the state file names group %d; "+
			"restarted (fenced), the secondary is at group %d", pos.Group, stateGroup, got.Group)
	}
}

// stateFileGroup is the group the state file at path names, 0 if there is
// none.
func stateFileGroup(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := apply.ReadState(path)
	switch {
	case err == nil:
		return st.Group
	case !errors.Is(err, fs.ErrNotExist):
		t.Fatal(err)
	}
	return 0
}
