package secondary

import (
	"errors"
	"testing"
	"time"

	"duplex/recordset"
)

// A group too large for the history applied while a view of a past time
// opens drops the undo the view was about to read (a Gap): the view is
// refused as outside the window, never opened over what is left, which
// reads the volume as of a later group under the earlier one's name.
func TestPinAtWhileAGapDropsTheUndo(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	hist := historyOf(dir)
	hist.MaxBytes = 16 << 10
	r := openGateRigWith(t, dir, nil, hist)
	defer r.close(t)
	r.sendSet(t, 1, []recordset.Update{blockWrite(2, 1)})
	r.sendSet(t, 2, []recordset.Update{blockWrite(2, 2), blockWrite(4, 2)})
	waitGate(t, "group 2 applied", func() bool { return r.sec.appliedState().Group == 2 })
	v, err := tryPinAtWhile(t, r, int64(time.Millisecond), nil, func() {
		var big []recordset.Update
		for blk := uint64(10); blk < 16; blk++ {
			big = append(big, blockWrite(blk, 3))
		}
		r.sendSet(t, 3, big)
		waitGate(t, "group 3 applied with no undo kept while a view of group 1 opens", func() bool { return r.sec.appliedState().Group == 3 })
	})
	if err == nil {
		got := blockBytes(t, func(b []byte, off int64) error { return v.ReadAt("vol1", b, off) }, 2)
		v.Close()
		t.Fatalf("a view of group %d opened after a gap dropped the undo after it; it reads blocks 2..5 as %v (group 1: [1 238 238 238])", v.Group, got)
	}
	if !errors.Is(err, ErrOutsideWindow) {
		t.Fatalf("a view of group 1 whose undo a gap dropped while it opened: %v, want ErrOutsideWindow", err)
	}
}
