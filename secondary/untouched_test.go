package secondary

import (
	"errors"
	"path/filepath"
	"testing"

	"duplex/apply"
)

// TestUntouchedCannotTellOnceGroupsAreReleased: a secondary that applied
// groups whose journal no longer holds them cannot say what they named:
// no volume is called untouched, so a gone image is refused rather than
// made anew over a copy that may have begun.
func TestUntouchedCannotTellOnceGroupsAreReleased(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	if err := apply.WriteState(state, apply.State{Session: "s", Group: 7, Time: 1}); err != nil {
		t.Fatal(err)
	}
	got, err := Untouched(nil, state, filepath.Join(dir, "journal"), []string{"vol1"})
	if !errors.Is(err, ErrCannotTell) || len(got) != 0 {
		t.Fatalf("Untouched after group 7 applied, its journal empty: %v, %v; want none, ErrCannotTell", got, err)
	}
	if err := apply.WriteState(state, apply.State{Session: "s", Time: 1}); err != nil {
		t.Fatal(err)
	}
	got, err = Untouched(nil, state, filepath.Join(dir, "journal"), []string{"vol1"})
	if err != nil || len(got) != 1 {
		t.Fatalf("Untouched with nothing applied or journaled: %v, %v; want vol1", got, err)
	}
}
