package secondary

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"duplex/disk"
	"duplex/volume"
)

// recoverFenceFaultCases are the rows of the tests of a recover --at
// whose RecoverTo fails on the disk before its state file could name the
// point: a plain session, and a coupled one whose volumes hold part of
// the group after the applied one as it fences.
var recoverFenceFaultCases = []recoverKillCase{recoverKillCases[1], recoverKillCases[2]}

// openFaulted opens row c's secondary in a new directory on inj, fences
// it to recover, and returns it with the time its volumes are at.
func openFaulted(t *testing.T, c recoverKillCase, inj *disk.Injector) (dir string, sec *Secondary, v *volume.Volume, at int64) {
	t.Helper()
	dir = recoverKillBase(t, c)
	v, err := volume.Open(filepath.Join(dir, "vol1.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	sec, err = Open(recoverKillConfig(dir, c, v, inj))
	if err != nil {
		t.Fatal(err)
	}
	at = sec.Stats().Time
	if _, err := sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	return dir, sec, v, at
}

// A recover --at whose RecoverTo fails before its state file is written
// (the disk refuses the file's creation) has undone nothing, and its fence
// is recorded. A restart must find the volumes where the fence left them,
// under the state status reports, and fenced (the fence is recover
// --at's: the operator runs it again once the disk is fixed, and no
// primary may link meanwhile); run again, recover --at must reach the
// point asked for. A coupled secondary's volumes hold part of the next
// group as it fences, which no restart of a fenced secondary applies
// again: the restart said group 3 as of its time over volumes holding
// half of group 4, and recover --at run again undid that half and
// reached group 3, not the point inside group 4 asked for.
func TestARecoverAtWhoseRecoverToFailsBeforeItsStateWriteRestartsAsFenced(t *testing.T) {
	for _, c := range recoverFenceFaultCases {
		t.Run(c.name, func(t *testing.T) {
			inj := disk.NewInjector(nil)
			dir, sec, v, at := openFaulted(t, c, inj)
			inj.Inject(disk.Fault{Op: disk.OpCreate, Under: dir})
			if _, err := sec.RecoverTo(c.at); err == nil {
				t.Fatal("recover --at succeeded though no file could be created")
			}
			if inj.Injected(disk.OpCreate) == 0 {
				t.Fatal("no creation failed")
			}
			if got, want := c.piecesOf(t, v), c.image(at); !bytes.Equal(got, want) {
				t.Fatalf("a recover --at that failed before its state write changed the volumes: % x, want % x", got, want)
			}
			inj.Clear()
			if err := sec.Close(); err != nil {
				t.Fatal(err)
			}

			sec, err := Open(recoverKillConfig(dir, c, v, nil))
			if err != nil {
				t.Fatal(err)
			}
			defer sec.Close()
			if _, fenced := sec.Generation(); !fenced {
				t.Error("restarted unfenced after recover --at's fence")
			}
			st := sec.Stats()
			if got, want := c.piecesOf(t, v), c.image(st.Time); st.Time != at || !bytes.Equal(got, want) {
				t.Errorf("restarted at group %d as of %v (fenced at %v), over volumes holding % x, want % x", st.Group,
					time.Duration(st.Time), time.Duration(at), got, want)
			}
			got, err := sec.RecoverTo(c.at)
			if err != nil {
				t.Fatal(err)
			}
			if r, w := c.piecesOf(t, v), c.image(got.Time); got.Time != c.want || !bytes.Equal(r, w) {
				t.Errorf("recover --at %v run again: reached group %d as of %v, want %v; volumes % x, want % x", time.Duration(c.at),
					got.Group, time.Duration(got.Time), time.Duration(c.want), r, w)
			}
		})
	}
}

// A promotion in place whose fence this process made undoes it when the
// promotion fails (UndoFence). recover --at gives that up once its state
// file may name the point: the groups after it may be gone from the
// volumes from then on. A RecoverTo whose state file could not even be
// created has named nothing and undone nothing, and the fence must still
// be undoable: refused, the operator could only restart the secondary. A
// failure after the file's rename (its directory's fsync) may have named
// the point: the fence then holds.
func TestUndoFenceAfterARecoverToThatNamedNothing(t *testing.T) {
	c := recoverKillCases[1]
	t.Run("the state file not created", func(t *testing.T) {
		inj := disk.NewInjector(nil)
		dir, sec, v, at := openFaulted(t, c, inj)
		defer sec.Close()
		inj.Inject(disk.Fault{Op: disk.OpCreate, Under: dir})
		if _, err := sec.RecoverTo(c.at); err == nil {
			t.Fatal("recover --at succeeded though no file could be created")
		}
		inj.Clear()
		if err := sec.UndoFence(); err != nil {
			t.Errorf("the fence cannot be undone after a recover --at that named and undid nothing: %v", err)
		}
		if got, want := c.piecesOf(t, v), c.image(at); !bytes.Equal(got, want) {
			t.Errorf("volumes % x, want % x", got, want)
		}
	})
	t.Run("the state file renamed", func(t *testing.T) {
		inj := disk.NewInjector(nil)
		dir, sec, _, _ := openFaulted(t, c, inj)
		defer sec.Close()
		inj.Inject(disk.Fault{Op: disk.OpSyncDir, Under: dir})
		if _, err := sec.RecoverTo(c.at); err == nil {
			t.Fatal("recover --at succeeded though the directory's fsync failed")
		}
		inj.Clear()
		if err := sec.UndoFence(); err == nil {
			t.Error("the fence undone after a recover --at whose state file may name its point")
		}
	})
}
