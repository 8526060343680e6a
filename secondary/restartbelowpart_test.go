package secondary

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"duplex/volume"
)

// A coupled secondary applied group 4 through its second piece, the Gate's
// limit then, and was stopped unfenced. It opens again behind a Gate whose
// limit starts below that part: at the group before it, or inside it, at
// its first piece. What it reports must be what its volumes hold, a
// point: status, the newest point of its history, a read of the volumes
// and a recover --at of the time reported all say the same time. It
// reported the limit, group 3 as of 3ms (or group 4's first piece) over
// volumes that still held group 4's second piece: a plain recover said
// the volumes were consistent as of a time whose data they were past,
// and a coupled group's other members may hold none of what this one held
// past it.
func TestARestartWhoseLimitStartsBelowThePartReportsWhatTheVolumesHold(t *testing.T) {
	c := recoverKillCases[2] // coupled: group 4 applied through its second piece
	for _, low := range []struct {
		name  string
		limit int64
	}{
		{"at the group before the part", c.gateAt},
		{"inside the part", c.pieceTime(4, 0)},
	} {
		t.Run(low.name, func(t *testing.T) {
			dir := recoverKillBase(t, c)
			v, err := volume.Open(filepath.Join(dir, "vol1.img"), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			sec, err := Open(recoverKillConfig(dir, c, v, nil))
			if err != nil {
				t.Fatal(err)
			}
			if st := sec.Stats(); st.Time != c.limit || !bytes.Equal(c.piecesOf(t, v), c.image(c.limit)) {
				t.Fatalf("opened behind a limit at %v: at group %d as of %v, pieces % x: the test proves nothing", time.Duration(c.limit),
					st.Group, time.Duration(st.Time), c.piecesOf(t, v))
			}
			if err := sec.Close(); err != nil {
				t.Fatal(err)
			}

			lc := c
			lc.limit = low.limit
			sec, err = Open(recoverKillConfig(dir, lc, v, nil))
			if err != nil {
				t.Fatal(err)
			}
			defer sec.Close()
			st := sec.Stats()
			heads, ends := c.piecesOf(t, v), pieceEndsOf(t, c, v)
			if want := c.image(st.Time); st.Time != low.limit || !bytes.Equal(heads, want) || !bytes.Equal(ends, want) {
				t.Errorf("opened again behind a limit at %v: status says group %d as of %v over volumes holding % x (the pieces' last bytes % x), "+
					"want as of %v, % x", time.Duration(low.limit), st.Group, time.Duration(st.Time), heads, ends, time.Duration(low.limit), c.image(low.limit))
			}
			if st.HistoryNewest != st.Time {
				t.Errorf("opened again behind a limit at %v: status says as of %v, the history's newest point %v", time.Duration(low.limit),
					time.Duration(st.Time), time.Duration(st.HistoryNewest))
			}
			// The limit rises past the part again: the rest of it is
			// applied over volumes at the limit.
			sec.cfg.Gate.(*testGate).set(c.limit)
			waitGate(t, "the part applied through the limit again", func() bool { return sec.Stats().Time == c.limit })
			if r, w := c.piecesOf(t, v), c.image(c.limit); !bytes.Equal(r, w) || !bytes.Equal(pieceEndsOf(t, c, v), w) {
				t.Errorf("the limit back at %v: volumes % x, want % x", time.Duration(c.limit), r, w)
			}
		})
	}
}
