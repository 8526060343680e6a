package actlog

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestMarksSurviveACrashAndClearWhenAcknowledged(t *testing.T) {
	defer func(d time.Duration) { Idle = d }(Idle)
	Idle = 0
	path := filepath.Join(t.TempDir(), "al")
	sizes := map[string]int64{"a": 64 << 20, "b": 8 << 20}
	l, prev, err := Open(path, sizes, DefaultRegion)
	if err != nil || len(prev) != 0 {
		t.Fatalf("fresh log: %v %v", prev, err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.Mark("a", 5<<20, 4096))
	must(l.Mark("a", 5<<20+8192, 4096)) // same region: no new sync
	must(l.Mark("b", (1<<20)-10, 20))   // spans regions 0 and 1
	if got := l.Syncs(); got != 2 {
		t.Fatalf("%d syncs, want one per newly marked region batch (2)", got)
	}
	l.Wrote("a", 5<<20, 4096)
	l.Done("a", 5<<20, 4096)
	must(l.Clean()) // region 5 of a still has one unacknowledged update
	// Crash: no Close; reopen from the file.
	_, prev, err = Open(path, sizes, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][][2]int64{"a": {{5 << 20, 1 << 20}}, "b": {{0, 1 << 20}, {1 << 20, 1 << 20}}}
	for name, rs := range want {
		if len(prev[name]) != len(rs) {
			t.Fatalf("%s: recovered %v, want %v", name, prev[name], rs)
		}
		for i := range rs {
			if prev[name][i] != rs[i] {
				t.Fatalf("%s: recovered %v, want %v", name, prev[name], rs)
			}
		}
	}
	l.Wrote("a", 5<<20+8192, 4096)
	l.Done("a", 5<<20+8192, 4096)
	l.Wrote("b", (1<<20)-10, 20)
	l.Done("b", (1<<20)-10, 20)
	must(l.Clean())
	_, prev, _ = Open(path, sizes, DefaultRegion)
	if len(prev["a"]) != 0 || len(prev["b"]) != 0 {
		t.Fatalf("acknowledged regions still marked: %v", prev)
	}
}

func TestRecoveredMarksStayUntilUnstick(t *testing.T) {
	path := filepath.Join(t.TempDir(), "al")
	sizes := map[string]int64{"a": 16 << 20}
	l, _, _ := Open(path, sizes, DefaultRegion)
	l.Mark("a", 3<<20, 1)
	// Crash, reopen: the mark is recovered and must survive a second crash
	// even though nothing marks it again.
	l2, prev, err := Open(path, sizes, DefaultRegion)
	if err != nil || len(prev["a"]) != 1 {
		t.Fatalf("recovered %v %v", prev, err)
	}
	l2.Mark("a", 9<<20, 1) // persists a new slot
	_, prev, _ = Open(path, sizes, DefaultRegion)
	if len(prev["a"]) != 2 {
		t.Fatalf("second crash lost the first run's mark: %v", prev)
	}
	l3, _, _ := Open(path, sizes, DefaultRegion)
	l3.Unstick("a")
	l3.Close()
	if _, prev, _ = Open(path, sizes, DefaultRegion); len(prev["a"]) != 0 {
		t.Fatalf("marks after Unstick and clean close: %v", prev)
	}
}

func TestTornSlotFallsBackToTheOther(t *testing.T) {
	path := filepath.Join(t.TempDir(), "al")
	sizes := map[string]int64{"a": 16 << 20}
	l, _, _ := Open(path, sizes, DefaultRegion)
	l.Mark("a", 0, 1)     // gen 1 → slot 1
	l.Mark("a", 4<<20, 1) // gen 2 → slot 0
	data, _ := os.ReadFile(path)
	data[10] ^= 0xff // tear the newer slot (slot 0)
	os.WriteFile(path, data, 0o600)
	_, prev, err := Open(path, sizes, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	if len(prev["a"]) != 1 || prev["a"][0][0] != 0 {
		t.Fatalf("after a torn newer slot recovered %v, want the older slot's mark", prev)
	}
	os.WriteFile(path, make([]byte, len(data)), 0o600)
	if _, _, err := Open(path, sizes, DefaultRegion); err == nil {
		t.Fatal("a log with no valid slot opened without error")
	}
}

func TestHotRegionsStayMarked(t *testing.T) {
	l, _, _ := Open(filepath.Join(t.TempDir(), "al"), map[string]int64{"a": 8 << 20}, DefaultRegion)
	l.Mark("a", 0, 4096)
	l.Wrote("a", 0, 4096)
	l.Done("a", 0, 4096)
	if err := l.Clean(); err != nil {
		t.Fatal(err)
	}
	syncs := l.Syncs()
	l.Mark("a", 4096, 4096) // same region, just used: no new sync
	if l.Syncs() != syncs || l.Marked() != 1 {
		t.Fatalf("a recently used region was unmarked: %d syncs, %d marked", l.Syncs()-syncs, l.Marked())
	}
}

// markedAfterCrash opens the log at path again, as after a crash, and
// returns how many bytes of vol it finds marked, failing unless they are
// one run from the volume's start.
func markedAfterCrash(t *testing.T, path string, sizes map[string]int64, vol string) int64 {
	t.Helper()
	_, prev, err := Open(path, sizes, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	var marked int64
	for _, r := range prev[vol] {
		if r[0] != marked {
			t.Fatalf("after a crash, regions of %s from %d are not marked: %v", vol, marked, prev[vol])
		}
		marked += r[1]
	}
	return marked
}

// TestAStreamWaitsForTheLogOnlyAtItsStart: a stream of sequential 1 MiB
// writes whose log writes keep up with it (each write comes once the log
// is idle, as when the disk syncs faster than the stream crosses Ahead
// regions) waits for the log at its first two regions only: the
// marks ahead are written before the stream reaches them, not when it
// does. A sync of the log under a burst of writes to the page cache took
// 100-450 ms on a loaded machine (bench/RESULTS.md), and a stream that
// waits for one every Ahead regions stood still that long each time.
func TestAStreamWaitsForTheLogOnlyAtItsStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "al")
	sizes := map[string]int64{"a": 256 << 20}
	l, _, err := Open(path, sizes, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	// idle returns once every mark set is on disk, written by the log's
	// own writes in the background: nothing here writes it.
	idle := func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			l.mu.Lock()
			pending := false
			for _, v := range l.vols {
				for r, since := range v.since {
					if v.bits[r/64]&(1<<(r%64)) != 0 && since > l.durable {
						pending = true
					}
				}
			}
			l.mu.Unlock()
			if !pending {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("marks set ahead of the stream are not written within 10 s")
			}
			time.Sleep(time.Millisecond)
		}
	}
	const writes = 200
	for i := range int64(writes) {
		if err := l.Mark("a", i<<20, 1<<20); err != nil {
			t.Fatal(err)
		}
		l.Wrote("a", i<<20, 1<<20)
		l.Done("a", i<<20, 1<<20)
		idle()
	}
	if l.waits > 2 {
		t.Errorf("%d sequential writes waited for the log %d times, want 2 (the stream's first two regions)", writes, l.waits)
	}
	if got, most := l.Syncs(), uint64(writes/Ahead+3); got > most {
		t.Errorf("%d sequential writes synced the log %d times, want at most %d", writes, got, most)
	}
	marked := markedAfterCrash(t, path, sizes, "a")
	if marked < writes<<20 || marked > (writes+2*Ahead+1)<<20 {
		t.Fatalf("after a crash, %d MiB marked, want the %d written and at most %d ahead", marked>>20, writes, 2*Ahead)
	}
}

// TestSequentialWritesSyncOncePerStretch: a stream of sequential 1 MiB
// writes, each into a region of its own, writes and syncs the log about
// once per Ahead regions, not once per write; after a crash every region
// written is marked (the ones marked ahead too, which costs their copy and
// nothing else). Random writes mark only their own regions.
func TestSequentialWritesSyncOncePerStretch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "al")
	sizes := map[string]int64{"a": 64 << 20, "b": 64 << 20}
	l, _, err := Open(path, sizes, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	const writes = 48
	for i := range int64(writes) {
		if err := l.Mark("a", i<<20, 1<<20); err != nil {
			t.Fatal(err)
		}
		l.Wrote("a", i<<20, 1<<20)
		l.Done("a", i<<20, 1<<20)
	}
	if got, most := l.Syncs(), uint64(writes/Ahead+2); got > most {
		t.Fatalf("%d sequential writes of a region each synced the log %d times, want at most %d", writes, got, most)
	}
	marked := markedAfterCrash(t, path, sizes, "a")
	if marked < writes<<20 {
		t.Fatalf("after a crash, %d bytes of a marked, want at least the %d written", marked, int64(writes)<<20)
	}
	before := l.Marked()
	for _, r := range []int64{10, 30, 20, 40} {
		if err := l.Mark("b", r<<20, 4096); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.Marked() - before; got != 4 {
		t.Fatalf("4 random writes to 4 regions marked %d regions", got)
	}
}
