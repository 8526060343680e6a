package failover

import (
	"slices"
	"testing"
)

// A promoted site restarted once with a volume left out of its config (an
// edit undone later) must not forget the regions that volume's acknowledged
// writes changed before a kill -9: the marks were in the activity log alone
// (its bitmap file is written only at a clean stop or a restart), and a rejoin
// that does not copy them loses those writes.
func TestChangesOfAVolumeLeftOutOfARestartSurvive(t *testing.T) {
	dir := t.TempDir()
	b1 := [2]int64{1 << 20, 4096}
	c := open(t, nil, dir)
	write(t, c, "b", b1[0], b1[1])
	crash(c)

	// Restarted with only a: b's marks are not in this run's log.
	onlyA := map[string]int64{"a": sizes["a"]}
	c2, err := OpenChanges(nil, dir, onlyA)
	if err != nil {
		t.Fatal(err)
	}
	write(t, c2, "a", 0, 4096) // the log is written again
	crash(c2)

	c = open(t, nil, dir)
	defer c.Close()
	if got, w := regions(c.Bitmap("b")), want(b1); !slices.Equal(got, w) {
		t.Fatalf("b's changed regions after a restart without it are %v, want %v: an acknowledged write's region is missing", got, w)
	}
}
