package secondary

import (
	"duplex/apply"
	"os"
	"path/filepath"
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

// TestRecoverAtAPointBeforeAForgetDoesNotClaimTheForgottenCopy: recover
// --at a point of the history from before a volume was forgotten does not
// report the volume consistent as of that point: forgotten, its image may
// have been removed with it (and made anew as zeros), or written by a new
// pair's first copy that the history's undo does not reach.
func TestRecoverAtAPointBeforeAForgetDoesNotClaimTheForgottenCopy(t *testing.T) {
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20}, subs: []string{"ss1"}}
	hist := historyOf(r.dir)
	r.edit = func(c *Config) { c.History = hist }
	r.open()
	t.Cleanup(r.close)
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy), write("vol1", 0), write("vol2", 0)),
		writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)),
		writeSet(3, 30_000, write("vol1", 4096), write("vol2", 4096)))
	if v := r.sec.Volume("vol2"); !v.Consistent {
		t.Fatalf("after the copies vol2 is reported %+v, want consistent", v)
	}

	// Taken out of both configs, vol2 is forgotten once a primary links
	// without it. Its image is removed with it, and the secondary opened
	// again with it added back makes it as zeros.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	delete(r.sizes, "vol2")
	r.open()
	if _, typ, _ := r.dial(r.hello()); typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(r.dir, "vol2.img")); err != nil {
		t.Fatal(err)
	}
	r.sizes["vol2"] = 1 << 20
	r.open()
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	st, err := r.sec.RecoverTo(25_000)
	if err != nil {
		t.Fatal(err)
	}
	if v := r.sec.Volume("vol2"); v.Consistent {
		t.Errorf("recovered to group %d, from before vol2 was forgotten, vol2 (its image made anew as zeros) is reported %+v, want not consistent", st.Group, v)
	}
	if v := r.sec.Volume("vol1"); !v.Consistent {
		t.Errorf("recovered to group %d, vol1 is reported %+v, want consistent", st.Group, v)
	}
}

// TestRecoverAtAPointBeforeADeletedPairsImageWasMadeAnew: a deleted
// pair's image gone at the secondary is made anew before it opens, the
// state file first saying it holds no copy (ForgottenThroughJournal, as
// the site does it); recover --at a point of the history from before
// does not report the zeros as the copy of that point.
func TestRecoverAtAPointBeforeADeletedPairsImageWasMadeAnew(t *testing.T) {
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20}, subs: []string{"ss1"}}
	hist := historyOf(r.dir)
	r.edit = func(c *Config) { c.History = hist }
	r.open()
	t.Cleanup(r.close)
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy), write("vol1", 0), write("vol2", 0)),
		writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)),
		writeSet(3, 30_000, write("vol1", 4096), mark("vol2", recordset.StateDeleted)),
		writeSet(4, 40_000, write("vol1", 8192)))
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// The site's deletedCopyGone: the state first, then the image anew.
	path := r.config().StatePath
	st, err := apply.ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	ForgetCopy(&st, "vol2")
	if err := apply.WriteState(path, st); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(r.dir, "vol2.img")); err != nil {
		t.Fatal(err)
	}
	r.open()
	if v := r.sec.Volume("vol2"); v.Consistent {
		t.Errorf("made anew, vol2 is reported %+v, want not consistent", v)
	}
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	got, err := r.sec.RecoverTo(25_000)
	if err != nil {
		t.Fatal(err)
	}
	if v := r.sec.Volume("vol2"); v.Consistent {
		t.Errorf("recovered to group %d, from before vol2's image was made anew as zeros, vol2 is reported %+v, want not consistent", got.Group, v)
	}
}
