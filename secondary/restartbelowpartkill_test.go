package secondary

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/volume"
)

// TestARestartBelowThePartKilledAtEachStep: a coupled secondary applied
// group 4 through its second piece and was stopped unfenced; recover --at
// opens it behind a Gate whose limit starts at group 4's first piece,
// which takes the volumes back to group 3 and applies the part through
// that limit, then fences and takes them back to group 3 (the row "to the
// group before the part"). Killed -9 at each of its changes to the disk,
// the undo's writes and flush at the open among them, the secondary
// opened again must be at the point its status reports, and recover --at
// run again must reach the point asked for.
func TestARestartBelowThePartKilledAtEachStep(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process at each step")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := recoverKillCases[3] // coupled, to the group before the part
	base := recoverKillBase(t, c)
	v, err := volume.Open(filepath.Join(base, "vol1.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := Open(recoverKillConfig(base, c, v, nil))
	if err != nil {
		t.Fatal(err)
	}
	if st := sec.Stats(); st.Time != c.limit {
		t.Fatalf("opened behind a limit at %v: as of %v: the test proves nothing", time.Duration(c.limit), time.Duration(st.Time))
	}
	if err := sec.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	low := c
	low.limit = c.pieceTime(4, 0)
	whole, steps := runRecoverKillWhole(t, exe, base, low)
	if !strings.Contains(strings.Join(steps, "\n"), "undo write") {
		t.Fatalf("the open behind the lower limit undid nothing:\n%s", strings.Join(steps, "\n"))
	}
	checkAfterKill(t, whole, low, low.at, low.want, low.want)
	total := len(steps) - 1
	reached := map[time.Duration]int{}
	killRecoverAtSteps(t, exe, base, low, 1, total, func(t *testing.T, dir, _ string) {
		reached[time.Duration(checkAfterKill(t, dir, low, low.at, low.want, low.want, low.limit))]++
	})
	t.Logf("%d steps; opened after the kills at: %v (time: kills)", total, reached)
}
