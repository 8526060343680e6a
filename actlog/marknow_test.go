package actlog

import (
	"path/filepath"
	"testing"
	"time"
)

// TestMarkNowMarksOnlyWhatIsOnDisk: MarkNow and StickNow, for a write that
// must not wait, set nothing and write nothing where a region is not marked
// on disk yet, and otherwise count the write as Mark does: a region it
// counted stays marked through Clean until Done and Wrote.
func TestMarkNowMarksOnlyWhatIsOnDisk(t *testing.T) {
	defer func(d time.Duration) { Idle = d }(Idle)
	Idle = 0
	l, _, err := Open(filepath.Join(t.TempDir(), "al"), map[string]int64{"a": 64 << 20}, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.MarkNow("a", 0, 4096) || l.StickNow("a", 0, 4096) || l.Marked() != 0 || l.Syncs() != 0 {
		t.Fatalf("a fresh region: marked now, %d marked, %d syncs", l.Marked(), l.Syncs())
	}
	if l.MarkNow("nosuch", 0, 4096) {
		t.Fatal("a volume the log does not have: marked now")
	}
	if err := l.Mark("a", 0, 4096); err != nil {
		t.Fatal(err)
	}
	if l.MarkNow("a", 0, DefaultRegion+1) {
		t.Fatal("a range into a fresh region: marked now")
	}
	if !l.MarkNow("a", 4096, 4096) || !l.StickNow("a", 8192, 4096) || l.Syncs() != 1 {
		t.Fatalf("a region marked on disk: not marked now, or written again (%d syncs)", l.Syncs())
	}
	l.Unstick("a")
	done := func(off int64) int {
		t.Helper()
		l.Done("a", off, 4096)
		l.Wrote("a", off, 4096)
		if err := l.Clean(); err != nil {
			t.Fatal(err)
		}
		return l.Marked()
	}
	if m := done(0); m != 1 {
		t.Fatalf("a region whose MarkNow is not done: %d marked after Clean, want 1", m)
	}
	if m := done(4096); m != 0 {
		t.Fatalf("every write done: %d marked after Clean", m)
	}
}
