package secondary

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
	"duplex/history"
	"duplex/volume"
)

// failingSink is a volume an undo writes back whose write numbered fail
// (from 1) writes the first half of its bytes and fails: a disk error
// part-way through the undo.
type failingSink struct {
	history.Sink
	n    *atomic.Int64
	fail int64
}

var errUndoWrite = errors.New("write: input/output error")

func (k failingSink) WriteAt(p []byte, off int64) error {
	if k.n.Add(1) == k.fail {
		if err := k.Sink.WriteAt(p[:len(p)/2], off); err != nil {
			return err
		}
		return errUndoWrite
	}
	return k.Sink.WriteAt(p, off)
}

// A coupled secondary fenced by recover --at holds the first half of group
// 4, applied through the Gate's limit; recover --at to a time before that
// part undoes it first, and the volume fails a write of that undo part-way
// (half of it written). The volumes are then at no point: part of the part
// undone. UndoFence must refuse (the fence of a promotion in place that
// failed): undone, the primary was taken again over volumes it takes for
// the part whole, and the rest of group 4 applied over them left the
// half-undone bytes under a group boundary they never held. The fence
// holds, and recover --at run again once the disk is fixed, and a
// restart, find the volumes at the point they report.
func TestUndoFenceAfterThePartsUndoFailedPartWayIsRefused(t *testing.T) {
	c := recoverKillCases[3] // coupled, to the group before the part
	t.Run("undo the fence", func(t *testing.T) {
		_, sec, v, at := failThePartsUndo(t, c)
		defer sec.Close()
		if err := sec.UndoFence(); err == nil {
			t.Errorf("the fence undone over volumes part-way back from the part of group 4: % x, fenced with % x", c.piecesOf(t, v), c.image(at))
		}
		if _, fenced := sec.Generation(); !fenced {
			t.Error("unfenced")
		}
	})
	t.Run("run again", func(t *testing.T) {
		_, sec, v, _ := failThePartsUndo(t, c)
		defer sec.Close()
		// For a point of the part: its first piece may be undone
		// already, and no point of it may be left to reach.
		got, err := sec.RecoverTo(c.pieceTime(4, 0))
		if err != nil {
			t.Fatalf("recover --at run again: %v", err)
		}
		if r, w := c.piecesOf(t, v), c.image(got.Time); !bytes.Equal(r, w) {
			t.Errorf("recover --at %v run again: reports group %d as of %v over volumes % x, want % x", time.Duration(c.pieceTime(4, 0)),
				got.Group, time.Duration(got.Time), r, w)
		}
	})
	t.Run("restart", func(t *testing.T) {
		dir, sec, v, _ := failThePartsUndo(t, c)
		if err := sec.Close(); err != nil {
			t.Fatal(err)
		}
		sec, err := Open(recoverKillConfig(dir, c, v, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer sec.Close()
		st := sec.Stats()
		if r, w := c.piecesOf(t, v), c.image(st.Time); !bytes.Equal(r, w) {
			t.Errorf("opened again at group %d as of %v over volumes % x, want % x", st.Group, time.Duration(st.Time), r, w)
		}
	})
}

// failThePartsUndo runs, on the fenced coupled secondary of row c, a
// recover --at to c.at, before the part of the next group its volumes
// hold, whose first write of the undo fails half-way.
func failThePartsUndo(t *testing.T, c recoverKillCase) (dir string, sec *Secondary, v *volume.Volume, at int64) {
	t.Helper()
	dir, sec, v, at = openFaulted(t, c, disk.NewInjector(nil))
	if at == 3*int64(time.Millisecond) {
		t.Fatal("the volumes hold no part of group 4: the test proves nothing")
	}
	n := &atomic.Int64{}
	testUndoSink = func(name string, s history.Sink) history.Sink { return failingSink{Sink: s, n: n, fail: 1} }
	defer func() { testUndoSink = nil }()
	if _, err := sec.RecoverTo(c.at); !errors.Is(err, errUndoWrite) {
		t.Fatalf("recover --at %v with a write of the undo failing: %v, want the write's error", time.Duration(c.at), err)
	}
	if got := c.piecesOf(t, v); bytes.Equal(got, c.image(at)) || bytes.Equal(got, c.image(c.want)) {
		t.Fatalf("the failed write left the volumes at a point (% x): the test proves nothing", got)
	}
	return dir, sec, v, at
}
