package site

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAJournalGoneWhileASecondaryRetriesIsWaitedFor: the journal and the
// state file beside it not there when the secondary opens again after a
// disk fault (their file system not mounted again yet) are not created
// again, empty, as a new session's: the volumes would be taken as at
// group 0, the groups journaled and not yet applied (which the primary
// let go) lost, and the next group applied over them as if consistent. As
// for a volume gone, the attempts go on, and once they are back the
// secondary opens and runs.
func TestAJournalGoneWhileASecondaryRetriesIsWaitedFor(t *testing.T) {
	r := retryingForGood(t, 50*time.Millisecond)
	dir := filepath.Dir(r.cfg.Secondary.Journal)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		t.Logf("in %s: %s", dir, e.Name())
	}
	moved := []string{r.cfg.Secondary.Journal, StatePath(r.cfg)}
	for _, p := range moved {
		if err := os.Rename(p, p+".aside"); err != nil {
			t.Fatal(err)
		}
	}
	r.in.Clear()
	waitFor(t, 30*time.Second, "attempts that fail", func() bool {
		return len(r.logs.lines("opening again after a disk fault failed")) >= 5 || len(r.logs.lines("opened again after a disk fault")) > 0
	})
	for _, p := range moved {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("an attempt to open again created %s, which the secondary held, again", p)
		}
	}
	if n := len(r.logs.lines("opened again after a disk fault")); n > 0 {
		t.Fatalf("the secondary opened again without its journal and state file")
	}
	t.Logf("the last attempt: %s", last(r.logs.lines("opening again after a disk fault failed")))
	for _, p := range moved {
		if err := os.Rename(p+".aside", p); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "the secondary open again once the journal is back", func() bool {
		return len(r.logs.lines("opened again after a disk fault")) > 0
	})
	select {
	case err := <-r.ended:
		t.Fatalf("RunSecondary ended: %v", err)
	default:
	}
}
