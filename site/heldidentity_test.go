package site

import (
	"path/filepath"
	"testing"
	"time"
)

// Two stops of one directory in the same second, giving up the same things,
// leave records that read alike: the first run's hold ends (it let the
// LOCK go, the second run took the directory and stopped), and letting go
// of its record must leave the second run's, which still holds the
// directory. Matched by their text, the first's let-go removed the
// second's, and a start meanwhile was refused as if another process held
// the directory.
func TestALetGoForgetsOnlyItsOwnStopsRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	since := time.Now().Truncate(time.Second)
	first := holdAfterStop(dir, "the primary", "the timer's lease write", "let go of the pair-state directory", since)
	second := holdAfterStop(dir, "the primary", "the timer's lease write", "let go of the pair-state directory", since)
	letGoAfterStop(dir, first)
	if heldAfterStop(dir) == "" {
		t.Fatal("the first stop's let-go forgot the second stop's record, which still holds the directory")
	}
	letGoAfterStop(dir, second)
	if held := heldAfterStop(dir); held != "" {
		t.Fatalf("both let go, the directory is still said held: %s", held)
	}
}
