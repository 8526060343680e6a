package secondary

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"duplex/disk"
	"duplex/history"
	"duplex/volume"
)

// A coupled secondary fenced by recover --at holds the first half of group
// 4, applied through the Gate's limit. recover --at to a point of that part
// writes its state file, whose rename reaches the directory and whose
// directory fsync fails: the state file may name the point of the part
// while the volumes still hold the part whole. Run again in the same
// process for a time before group 3, recover --at undoes the part (back to
// group 3) and voids its undo before its state file names the new point.
// A kill -9 there left the state file naming the point of group 4 over
// volumes at group 3, the undo that would take them there gone: opened
// again, the secondary said group 4 as of that point over volumes holding
// none of group 4.
func TestARecoverAtRunAgainAfterAStateWriteThatMayHaveNamedAPointOfThePart(t *testing.T) {
	c := recoverKillCases[2] // coupled, a point of the part applied
	inj := disk.NewInjector(nil)
	dir, sec, v, at := openFaulted(t, c, inj)
	defer sec.Close()
	if at != c.limit {
		t.Fatalf("opened as of %v, want the part through %v: the test proves nothing", time.Duration(at), time.Duration(c.limit))
	}
	inj.Inject(disk.Fault{Op: disk.OpSyncDir, Under: dir})
	if _, err := sec.RecoverTo(c.at); err == nil {
		t.Fatal("recover --at succeeded though the directory's fsync failed")
	}
	if inj.Injected(disk.OpSyncDir) == 0 {
		t.Fatal("no fsync of the directory failed: the test proves nothing")
	}
	inj.Clear()
	if got, want := c.piecesOf(t, v), c.image(at); !bytes.Equal(got, want) {
		t.Fatalf("a recover --at that failed at its state write changed the volumes: % x, want % x", got, want)
	}

	// Run again for a time before the part: the kill comes once the
	// undo of the part is done, before the state file names the point.
	before := recoverKillCases[4] // coupled, before the part applied
	killed := filepath.Join(t.TempDir(), "killed")
	copied := false
	sec.testRecovering = func(history.Point) {
		if !copied {
			copied = true
			copyTree(t, dir, killed)
		}
	}
	got, err := sec.RecoverTo(before.at)
	sec.testRecovering = nil
	if err != nil {
		t.Fatal(err)
	}
	if r, w := c.piecesOf(t, v), c.image(got.Time); got.Time != before.want || !bytes.Equal(r, w) {
		t.Fatalf("recover --at %v run again: reached group %d as of %v over % x, want %v, % x", time.Duration(before.at), got.Group,
			time.Duration(got.Time), r, time.Duration(before.want), w)
	}

	kv, err := volume.Open(filepath.Join(killed, "vol1.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	ks, err := Open(recoverKillConfig(killed, c, kv, nil))
	if err != nil {
		t.Fatalf("open after a kill between the undo of the part and the state write: %v", err)
	}
	defer ks.Close()
	st := ks.Stats()
	if r, w := c.piecesOf(t, kv), c.image(st.Time); !bytes.Equal(r, w) {
		t.Errorf("open after a kill between the undo of the part and the state write: status says group %d as of %v over volumes holding % x, want % x",
			st.Group, time.Duration(st.Time), r, w)
	}
	if _, err := ks.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	got, err = ks.RecoverTo(before.at)
	if err != nil {
		t.Fatalf("recover --at %v after the kill: %v", time.Duration(before.at), err)
	}
	if r, w := c.piecesOf(t, kv), c.image(got.Time); got.Time != before.want || !bytes.Equal(r, w) {
		t.Errorf("recover --at %v after the kill: reached group %d as of %v over % x, want %v, % x", time.Duration(before.at), got.Group,
			time.Duration(got.Time), r, time.Duration(before.want), w)
	}
}
