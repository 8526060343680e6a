package secondary

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"duplex/volume"
)

// A coupled secondary's recover --at fences with part of the next group in
// the volumes (FencedPart), and, for a time before that part, undoes it
// before its state file names a point. Killed from the fence on until that
// undo is done, the state file still names the group before the part, and
// nothing says the volumes are at any point but the identity and the undo
// held. A restart with history turned off since (HistoryConfig.Left) must
// find them at the time status reports, as one with history does: the
// part whole (the fence recorded) or undone whole (the run undoing it is
// finished from the history kept before). It finished only runs that had
// named a point (RecoveredFrom), and opened at group 3 as of 3ms over
// volumes holding part of group 4, or, killed part-way through its undo,
// some pieces of that part and not others.
func TestARecoverAtKilledUndoingThePartOpensWithHistoryOff(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process at each step")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := recoverKillCases[3] // coupled, to the group before the part
	base := recoverKillBase(t, c)
	_, steps := runRecoverKillWhole(t, exe, base, c)
	// From the fence's identity (the first rename of identity.json) to
	// the voiding of the part's undo, once the volumes are flushed.
	var from, to int
	for _, s := range steps {
		f := strings.Fields(s)
		if len(f) < 3 || f[0] != "step" {
			continue
		}
		n, _ := strconv.Atoi(f[1])
		switch {
		case from == 0 && f[2] == "rename" && strings.HasSuffix(s, "identity.json"):
			from = n + 1
		case from != 0 && to == 0 && f[2] == "flush":
			to = n + 1
		}
	}
	if from == 0 || to <= from {
		t.Fatalf("no fence's identity and flush of the volumes after it among the steps:\n%s", strings.Join(steps, "\n"))
	}
	undone := 0
	killRecoverAtSteps(t, exe, base, c, from, to, func(t *testing.T, dir, held string) {
		if strings.Contains(held, "undo write") {
			undone++
		}
		v, err := volume.Open(filepath.Join(dir, "vol1.img"), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		cfg := recoverKillConfig(dir, c, v, nil)
		cfg.History = HistoryConfig{Left: cfg.History.Dir}
		sec, err := Open(cfg)
		if err != nil {
			t.Fatalf("open with history off after the kill at %s: %v", held, err)
		}
		defer sec.Close()
		st := sec.Stats()
		if got, w := c.piecesOf(t, v), c.image(st.Time); !bytes.Equal(got, w) {
			t.Errorf("open with history off after the kill at %s: status says group %d as of %v, but the pieces of groups 1..%d hold % x, want % x",
				held, st.Group, time.Duration(st.Time), recoverKillGroups, got, w)
		}
	})
	// The steps of a run may shift a little between runs (the
	// checkpointer's own): said, not failed on.
	t.Logf("%d of the kills at steps %d..%d came in the undo of the part", undone, from, to)
}

// A secondary recover --at fenced and took back nowhere (it failed, or
// was stopped before it named a point) holds no part of a group to undo
// unless it is coupled: turned off with its history since, it opens
// without reading the history kept before, which may be why it was
// turned off (here a file where the directory was).
func TestAPlainSecondaryFencedByRecoverAtOpensWithItsOldHistoryUnreadable(t *testing.T) {
	c := recoverKillCases[1]
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
	at := sec.Stats().Time
	if _, err := sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	if err := sec.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := recoverKillConfig(dir, c, v, nil)
	left := filepath.Join(dir, "history-left")
	if err := os.WriteFile(left, []byte("not a history\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.History = HistoryConfig{Left: left}
	sec, err = Open(cfg)
	if err != nil {
		t.Fatalf("open with history off, fenced by a recover --at that named no point: %v", err)
	}
	defer sec.Close()
	if st := sec.Stats(); st.Time != at {
		t.Errorf("opened as of %v, fenced at %v", time.Duration(st.Time), time.Duration(at))
	}
}
