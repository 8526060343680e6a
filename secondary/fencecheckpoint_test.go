package secondary

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"duplex/apply"
	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// TestFenceCheckpointsBeforeTheVolumesAreWritten: recover fences a running
// secondary, which then checkpoints only now and then: the state file may
// still name a group before the last one applied. Once the fence returns the
// operator may write to the volumes (after the daemon is gone, kill -9
// included). A restart must then find the state file at the fenced group and
// replay nothing: groups applied again would write the primary's old data
// over the operator's new writes.
func TestFenceCheckpointsBeforeTheVolumesAreWritten(t *testing.T) {
	r := twoGroupsUncheckpointed(t)
	pos, err := r.sec.Fence()
	if err != nil {
		t.Fatal(err)
	}
	r.crash()
	r.takeOverAndRestart(pos.Group, pos.Group)
}

// TestRecoverOfAStoppedSecondaryCheckpointsBeforeTheVolumesAreWritten: the
// same through recover of a secondary killed with its state file behind:
// recover opens it (replaying the journal) and fences it, and the daemon is
// killed again before it stops cleanly.
func TestRecoverOfAStoppedSecondaryCheckpointsBeforeTheVolumesAreWritten(t *testing.T) {
	r := twoGroupsUncheckpointed(t)
	r.crash()
	r.openVolumes()
	sec, err := Open(r.config())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	r.sec = sec
	r.run()
	pos, err := r.sec.Fence()
	if err != nil {
		t.Fatal(err)
	}
	r.crash()
	r.takeOverAndRestart(pos.Group, pos.Group)
}

// twoGroupsUncheckpointed is a running secondary that applied groups 1 and
// 2, writing 0xa1 at [0, 4096) and 0xa2 at [4096, 8192) of volume a, and
// has not checkpointed them.
func twoGroupsUncheckpointed(t *testing.T) *identityRig {
	r := newIdentityRig(t) // checkpoints only when closed
	first := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096, Timestamp: 1_000, Data: bytes.Repeat([]byte{0xa1}, 4096)}
	second := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: 4096, Timestamp: 3_000, Data: bytes.Repeat([]byte{0xa2}, 4096)}
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendRecordSet(t, conn, subsystemSet("ss1", 1, 1_000, 4_000, first, second))
	sendRecordSet(t, conn, subsystemSet("ss2", 1, 0, 2_000))
	sendRecordSet(t, conn, subsystemSet("ss2", 2, 0, 5_000))
	if reason, acked := answers(t, conn, 1); acked != 2 {
		t.Fatalf("acknowledged through group %d, want 2 (refusal %q)", acked, reason)
	}
	return r
}

// takeOverAndRestart writes over both groups' data, as an operator using the
// fenced volume does, restarts the secondary and checks that nothing of the
// groups came back and that the state file names group want.
func (r *identityRig) takeOverAndRestart(fenced, want uint64) {
	t := r.t
	t.Helper()
	if fenced != 2 {
		t.Fatalf("fenced at group %d, want 2", fenced)
	}
	st, err := apply.ReadState(filepath.Join(r.site, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	mine := bytes.Repeat([]byte{0xee}, 8192)
	f, err := os.OpenFile(filepath.Join(r.dir, "a.img"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(mine, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r.open()
	got := make([]byte, len(mine))
	if err := r.sec.ReadAt("a", got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, mine) {
		t.Fatalf("fenced at group %d with the state file at group %d, killed, the volume written by the operator, restarted: "+
			"the restart replayed groups over the operator's writes (byte 0 is %#x, byte 4096 is %#x, want 0xee)",
			fenced, st.Group, got[0], got[4096])
	}
	if st.Group != want {
		t.Fatalf("fenced at group %d, the state file names group %d, want %d", fenced, st.Group, want)
	}
}

// TestFencedSecondaryWithItsStateBehindReplaysNothing: a secondary fenced
// with its state file behind the applied group (by a version whose fence did
// not checkpoint) and killed may have had its volumes written since. Its
// restart applies none of the journaled groups after the state file's group:
// they were applied before the fence, and again they would overwrite those
// writes.
func TestFencedSecondaryWithItsStateBehindReplaysNothing(t *testing.T) {
	r := twoGroupsUncheckpointed(t)
	r.crash()
	path := IdentityPath(filepath.Join(r.site, "state.json"))
	id, err := readIdentity(disk.OS, path, WayForward)
	if err != nil {
		t.Fatal(err)
	}
	id.Follows, id.Generation, id.Fenced = id.Generation, 0x5eed, "2026-12-02T00:00:00Z"
	if err := writeIdentity(disk.OS, path, id); err != nil {
		t.Fatal(err)
	}
	r.takeOverAndRestart(2, 0)
}
