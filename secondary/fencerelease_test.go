package secondary

import (
	"log/slog"
	"testing"

	"duplex/apply"
	"duplex/disk"
	"duplex/internal/testenv"
	"duplex/recordset"
	"duplex/transport"
)

// TestAFenceWhoseJournalReleaseFailsIsRecorded: the fence's checkpoint
// writes the state file (group 5, the volumes flushed) and then fails to
// release the journal's applied segments (the journal's disk refuses
// removals and renames). The state file names the group the fence is at,
// so the fence holds and is recorded, and recover goes on: only journal
// space waits, released once the disk lets it. Before, the fence said
// "the applied group is not recorded", which it was, and left the fence
// unrecorded, for recover to fail until the secondary was restarted.
func TestAFenceWhoseJournalReleaseFailsIsRecorded(t *testing.T) {
	in := disk.NewInjector(nil)
	logs := &testenv.LogBuffer{}
	edit := func(c *Config) {
		// Segments of 1.5 MiB: the groups below fill two.
		c.FS = roomFS{FS: in, free: 8 << 20}
		c.LargestGroup = 1 << 20
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		// No checkpoint but the fence's.
		c.CheckpointEvery = 1 << 40
	}
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 16 << 20}, subs: []string{"ss1"}, edit: edit}
	r.open()
	t.Cleanup(r.close)
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	big := func(off uint64) recordset.Update {
		return recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: off, Length: 900 << 10}
	}
	const last = 5
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), write("vol1", 0)),
		writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd), filled("vol1", 8192, 2)),
		writeSet(3, 30_000, big(3<<20)), writeSet(4, 40_000, big(4<<20)), writeSet(last, 50_000, big(5<<20)))
	waitFor(t, "group 5 applied", func() bool { return r.sec.Stats().Group >= last })
	held := r.sec.Stats().JournalBytes
	for _, op := range []disk.Op{disk.OpRemove, disk.OpRename} {
		in.Inject(disk.Fault{Op: op, Under: r.config().JournalDir, Err: disk.EIO})
	}
	pos, err := r.sec.Fence()
	if err != nil {
		t.Fatalf("the fence failed on the journal's release alone: %v", err)
	}
	if pos.Group != last {
		t.Errorf("fenced at group %d, want %d", pos.Group, last)
	}
	st, err := apply.ReadState(r.config().StatePath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Group != last {
		t.Errorf("the state file names group %d, the fence %d", st.Group, pos.Group)
	}
	if id, err := readIdentity(disk.Or(nil), IdentityPath(r.config().StatePath), ""); err != nil || id.Fenced == "" {
		t.Errorf("the fence is not recorded in the identity: %+v, %v", id, err)
	}
	if b := r.sec.Stats().JournalBytes; b < held {
		t.Fatalf("the journal was released (%d bytes, %d before) with its disk refusing removals", b, held)
	}
	in.Clear()
	waitFor(t, "the journal's applied segments released once the disk lets it", func() bool {
		return r.sec.Stats().JournalBytes < held
	})
}
