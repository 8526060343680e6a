package history

import (
	"math/rand"
	"sync"
	"testing"
	"time"

	"duplex/disk"
)

// captureGroups captures groups first through last, 600 KiB of before
// image each (a segment of 1 MiB holds one), stamped at their number.
func captureGroups(t *testing.T, l *Log, first, last uint64, seed int64) {
	t.Helper()
	v := &mem{make([]byte, 1<<20)}
	rng := rand.New(rand.NewSource(seed))
	for g := first; g <= last; g++ {
		rng.Read(v.b[:600<<10])
		if err := l.Capture(Header{Group: g, Time: int64(g)}, []Range{{"v", 0, 600 << 10}}, map[string]Source{"v": v}); err != nil {
			t.Fatal(err)
		}
	}
}

// The Trim the last hold's let-go runs again may start after a Void (a
// recover --at taking the volumes back): the groups after the point are
// numbered again, and captured before they are applied, so that a restart
// applying one again finds its undo (Has) rather than capture the volumes
// part-way through it. The Trim run again must go by the keep the Void
// lowered, not the one it had as the hold was let go: that one took the
// undo of groups captured since and not applied.
func TestARetrimAfterAVoidKeepsTheGroupsCapturedSince(t *testing.T) {
	l, err := Open(t.TempDir(), Options{MaxBytes: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	captureGroups(t, l, 1, 12, 11)
	p, ok := l.Oldest()
	if !ok {
		t.Fatal("no point")
	}
	release, err := l.Hold(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Trim(12); err != nil {
		t.Fatal(err)
	}
	// A Trim (a checkpoint's) under way as the hold goes: the one run
	// again waits for it.
	l.trimMu.Lock()
	release()
	if err := l.Void(Point{Group: 6, Time: 6}); err != nil {
		l.trimMu.Unlock()
		t.Fatal(err)
	}
	captureGroups(t, l, 7, 12, 12)
	l.trimMu.Unlock()
	l.retrims.Wait()
	for g := uint64(7); g <= 12; g++ {
		if !l.Has(g) {
			t.Fatalf("after a Void to group 6 and groups 7-12 captured again, the Trim run again as the hold went dropped the undo of group %d (oldest %v): its keep was 12, from before the Void", g, oldestGroup(l))
		}
	}
}

func oldestGroup(l *Log) uint64 {
	p, _ := l.Oldest()
	return p.Group
}

// syncDirGate is a file system whose SyncDir, once armed, says so and
// waits to be let go: a Trim part-way through releasing its segments.
type syncDirGate struct {
	disk.FS
	mu      sync.Mutex
	entered chan struct{}
	proceed chan struct{}
}

func (f *syncDirGate) SyncDir(dir string) error {
	f.mu.Lock()
	armed := f.entered != nil
	entered, proceed := f.entered, f.proceed
	f.entered = nil
	f.mu.Unlock()
	if armed {
		close(entered)
		<-proceed
	}
	return f.FS.SyncDir(dir)
}

// A Gap (a group too large for the history, applied with no undo kept)
// may come while a Trim releases segments, now also the one the last
// hold's let-go runs in the background beside the applier. The Gap opens
// the journal again, numbered from 1; the Trim, once its release was
// done, forgot the records of the old journal by their index, and with
// them the new one's: the gap record itself, which the files hold.
func TestAGapWhileATrimReleasesKeepsTheGapRecord(t *testing.T) {
	fsys := &syncDirGate{FS: disk.OS}
	dir := t.TempDir()
	l, err := Open(dir, Options{MaxBytes: 2 << 20, FS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	captureGroups(t, l, 1, 12, 21)
	entered, proceed := make(chan struct{}), make(chan struct{})
	fsys.mu.Lock()
	fsys.entered, fsys.proceed = entered, proceed
	fsys.mu.Unlock()
	trimmed := make(chan error, 1)
	go func() { trimmed <- l.Trim(12) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the Trim synced no directory: it released nothing")
	}
	gapped := make(chan error, 1)
	go func() { gapped <- l.Gap(Header{Group: 13, Time: 13}) }()
	// Let the Trim go on once the Gap has the index (or waits its turn).
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if !l.mu.TryLock() {
			break
		}
		l.mu.Unlock()
	}
	close(proceed)
	if err := <-trimmed; err != nil {
		t.Fatalf("Trim: %v", err)
	}
	if err := <-gapped; err != nil {
		t.Fatalf("Gap: %v", err)
	}
	if last := l.Last(); last != 13 {
		t.Fatalf("after a Gap at group 13 beside a Trim, the Log's newest group is %d, want 13: the Trim forgot the gap record the files hold", last)
	}
	if p, ok := l.Oldest(); !ok || p.Group != 13 {
		t.Fatalf("after a Gap at group 13 beside a Trim, the oldest point is group %d (%v), want 13", p.Group, ok)
	}
}
