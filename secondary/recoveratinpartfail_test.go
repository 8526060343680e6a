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

// A coupled secondary fenced by recover --at holds the first half of group
// 4, applied through the Gate's limit; recover --at to a point of that
// part names the point in its state file and then undoes the rest of the
// part, and the volume fails the first write of that undo half-way. The
// volumes are at no point, and the part is no longer theirs. A run again
// in the same process for a time outside the history window is refused,
// and must leave the volumes at the point status reports, the one the
// state file names: an operator who reads the refusal runs it again for a
// time the window holds, and the volumes must not be served meanwhile
// (recover, promote in place) half undone under a point's name. It left
// the undo unfinished, status saying the part (group 4 through its second
// piece) over volumes whose second piece was half undone.
func TestARecoverAtRefusedAfterAFailedUndoOfThePartFinishesIt(t *testing.T) {
	c := recoverKillCases[2] // coupled, a point of the part applied
	_, sec, v, at := openFaulted(t, c, disk.NewInjector(nil))
	defer sec.Close()
	if at != c.limit {
		t.Fatalf("opened as of %v, want the part through %v: the test proves nothing", time.Duration(at), time.Duration(c.limit))
	}
	n := &atomic.Int64{}
	testUndoSink = func(name string, s history.Sink) history.Sink { return failingSink{Sink: s, n: n, fail: 1} }
	_, err := sec.RecoverTo(c.at)
	testUndoSink = nil
	if !errors.Is(err, errUndoWrite) {
		t.Fatalf("recover --at %v with a write of the undo failing: %v, want the write's error", time.Duration(c.at), err)
	}
	heads, ends := c.piecesOf(t, v), pieceEndsOf(t, c, v)
	if bytes.Equal(heads, ends) {
		t.Fatalf("the failed write left the volumes at a point (% x): the test proves nothing", heads)
	}
	if _, err := sec.RecoverTo(1); !errors.Is(err, ErrOutsideWindow) {
		t.Fatalf("recover --at 1ns run again: %v, want it outside the window", err)
	}
	st := sec.Stats()
	if got, ends, want := c.piecesOf(t, v), pieceEndsOf(t, c, v), c.image(st.Time); st.Time != c.want || !bytes.Equal(got, want) || !bytes.Equal(ends, want) {
		t.Errorf("after a recover --at refused as outside the window: at group %d as of %v over volumes holding % x (the pieces' last bytes % x); "+
			"want as of %v (the point the state file names), % x", st.Group, time.Duration(st.Time), got, ends, time.Duration(c.want), c.image(c.want))
	}
	// And a time the window holds reaches its point over volumes at it.
	first := int64(time.Millisecond)
	got, err := sec.RecoverTo(first)
	if err != nil {
		t.Fatal(err)
	}
	if r, w := c.piecesOf(t, v), c.image(first); got.Time != first || !bytes.Equal(r, w) || !bytes.Equal(pieceEndsOf(t, c, v), w) {
		t.Errorf("recover --at %v after: reached group %d as of %v over volumes % x, want % x", time.Duration(first), got.Group,
			time.Duration(got.Time), r, w)
	}
}

// pieceEndsOf is piecesOf for the last byte of every piece: a write that
// failed half-way wrote the first half of its bytes.
func pieceEndsOf(t *testing.T, c recoverKillCase, v *volume.Volume) []byte {
	t.Helper()
	var out []byte
	b := make([]byte, 1)
	for k := uint64(1); k <= recoverKillGroups; k++ {
		for j := 0; j < c.pieces; j++ {
			if err := v.ReadAt(b, int64(k*regionBytes+uint64(j+1)*c.pieceBytes()-1)); err != nil {
				t.Fatal(err)
			}
			out = append(out, b[0])
		}
	}
	return out
}
