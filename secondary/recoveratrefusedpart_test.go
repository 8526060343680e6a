package secondary

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"duplex/disk"
)

// A recover --at for a time the history does not reach is refused, and
// must leave the volumes as they were: the operator runs it again for a
// time it reaches. A coupled secondary's volumes hold part of the next
// group as it fences, and the refused run undid that part before it found
// the time outside the window: the volumes went back to the group before,
// and the run again for a point of the part reached that group instead.
func TestARecoverAtRefusedForATimeOutsideTheWindowKeepsThePart(t *testing.T) {
	c := recoverKillCases[2] // coupled, a point of the part applied
	_, sec, v, at := openFaulted(t, c, disk.NewInjector(nil))
	defer sec.Close()
	if _, err := sec.RecoverTo(1); !errors.Is(err, ErrOutsideWindow) {
		t.Fatalf("recover --at 1ns: %v, want it outside the window", err)
	}
	st := sec.Stats()
	if got, want := c.piecesOf(t, v), c.image(at); st.Time != at || !bytes.Equal(got, want) {
		t.Errorf("after a recover --at refused, at group %d as of %v over volumes holding % x; want as of %v, % x", st.Group,
			time.Duration(st.Time), got, time.Duration(at), want)
	}
	got, err := sec.RecoverTo(c.at)
	if err != nil {
		t.Fatal(err)
	}
	if r, w := c.piecesOf(t, v), c.image(got.Time); got.Time != c.want || !bytes.Equal(r, w) {
		t.Errorf("recover --at %v after the refused one: reached group %d as of %v, want %v; volumes % x, want % x", time.Duration(c.at),
			got.Group, time.Duration(got.Time), time.Duration(c.want), r, w)
	}
}
