package journal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// rollOnce appends records from next on until a new segment starts, and
// returns the index after the last appended.
func rollOnce(t *testing.T, j *Journal, next uint64) uint64 {
	t.Helper()
	n := len(segFilesOf(j))
	for ; len(segFilesOf(j)) == n; next++ {
		appendRange(t, j, next, next)
	}
	return next
}

// wantAfterReopen syncs and closes j, and checks that the journal in dir,
// opened again with opts, holds every record from j's first through last.
func wantAfterReopen(t *testing.T, j *Journal, dir string, opts Options, last uint64) {
	t.Helper()
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	first := j.FirstIndex()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, dir, opts)
	defer j.Close()
	wantRange(t, replayAll(t, j, 0), first, last)
}

func segFilesOf(j *Journal) []segment {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]segment(nil), j.segs...)
}

// A released segment is kept as the spare, its header zeroed, and the next
// segment is that file written over in place rather than a new file: no
// removal (a discard of its blocks on a file system mounted with discard),
// no allocation, and an fdatasync of a segment that grows within blocks
// already written commits nothing to the file system's journal. Every
// segment but the last still ends at its records, and the journal reopens.
func TestReleaseKeepsASpareForTheNextSegment(t *testing.T) {
	for _, buffered := range []bool{false, true} {
		t.Run(map[bool]string{false: "direct", true: "buffered"}[buffered], func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentSize: 150, Buffered: buffered}
			j := openT(t, dir, opts)
			appendRange(t, j, 1, 40)
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			oldest := segFilesOf(j)[0]
			before, err := os.Stat(oldest.path)
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Release(20); err != nil {
				t.Fatal(err)
			}
			spare := filepath.Join(dir, spareName)
			b, err := os.ReadFile(spare)
			if err != nil {
				t.Fatalf("no spare after Release: %v", err)
			}
			if !bytes.Equal(b[:segmentHeaderSize], make([]byte, segmentHeaderSize)) {
				t.Fatalf("spare's header not zeroed: %x", b[:segmentHeaderSize])
			}
			st, _ := os.Stat(spare)
			if !os.SameFile(before, st) {
				t.Fatal("the spare is not the oldest segment's file")
			}
			if _, err := os.Stat(oldest.path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("released segment still under its name: %v", err)
			}

			next := rollOnce(t, j, 41)
			segs := segFilesOf(j)
			active := segs[len(segs)-1]
			st2, err := os.Stat(active.path)
			if err != nil {
				t.Fatal(err)
			}
			if !os.SameFile(before, st2) {
				t.Fatal("the new segment is a new file, not the spare")
			}
			if _, err := os.Stat(spare); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("spare still there once taken: %v", err)
			}
			next = rollOnce(t, j, next)
			wantAfterReopen(t, j, dir, opts, next-1)
		})
	}
}

// A spare found by Open may be one whose header a crash kept from being
// zeroed, or one renamed as a new segment whose name no fsync covered (its
// records unacknowledged): Open removes it, whatever it holds, and the
// log is the segments.
func TestOpenRemovesASpare(t *testing.T) {
	for name, content := range map[string]func(t *testing.T, dir string) []byte{
		"an old segment, header not zeroed": func(t *testing.T, dir string) []byte {
			b, err := os.ReadFile(segFiles(t, dir)[0])
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		"a new segment not yet named": func(t *testing.T, dir string) []byte {
			return staleSegment(t, 31, 35, payload, Options{})
		},
		"empty": func(*testing.T, string) []byte { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			dir := buildJournal(t, 30, 150)
			if err := os.WriteFile(filepath.Join(dir, spareName), content(t, dir), 0o644); err != nil {
				t.Fatal(err)
			}
			j := openT(t, dir, Options{SegmentSize: 150})
			defer j.Close()
			wantRange(t, replayAll(t, j, 0), 1, 30)
			if _, err := os.Stat(filepath.Join(dir, spareName)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("spare kept by Open: %v", err)
			}
			appendRange(t, j, 31, 40)
		})
	}
}

// A file system short of room gets no spare: the released segment is
// removed as before, so the space a full file system frees is free.
func TestNoSpareWithoutRoom(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 150, FS: fakeRoom{FS: newPageCacheFS(), free: 2*Needs(150, 0) - 1}})
	defer j.Close()
	appendRange(t, j, 1, 40)
	if err := j.Release(20); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, spareName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("spare kept on a full file system: %v", err)
	}
}

// Records in a recycled segment are as durable as in a new one once Sync
// returns (the rename of the spare is a change of the directory, which the
// first Sync after it fsyncs), and a kill -9 after later Appends leaves
// what Open reports durable by the time it returns.
func TestRecycledSegmentDurableAfterSyncAndAKill(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	pc := newPageCacheFS()
	opts := Options{FS: pc, SegmentSize: 150}
	j := openT(t, dir, opts)
	appendRange(t, j, 1, 40)
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := j.Release(20); err != nil {
		t.Fatal(err)
	}
	if got := pc.undurable(dir); len(got) != 0 {
		t.Fatalf("after Release, not durable: %v", got)
	}
	next := rollOnce(t, j, 41)
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := pc.undurable(dir); len(got) != 0 {
		t.Fatalf("after the Sync of a recycled segment, not durable: %v", got)
	}
	appendRange(t, j, next, next+2)
	pc.kill()
	j2, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if j2.LastIndex() != next+2 {
		t.Fatalf("LastIndex %d after the kill, want %d", j2.LastIndex(), next+2)
	}
	if got := pc.undurable(dir); len(got) != 0 {
		t.Fatalf("Open returned with %v not durable", got)
	}
	wantRange(t, replayAll(t, j2, 0), j2.FirstIndex(), next+2)
}

// A Replay that reads a segment while Release gives it up as the spare and
// the next segment is written over it returns the records it read as they
// were, or fails (and FirstIndex tells the caller they were released);
// it never returns what the file holds in its next life.
func TestReplayOfARecycledSegment(t *testing.T) {
	big := func(i uint64) []byte { return bytes.Repeat([]byte{byte(i)}, 10<<10) }
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 200 << 10})
	defer j.Close()
	var n uint64
	for len(segFilesOf(j)) < 3 {
		n++
		if err := j.Append(n, big(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	firstSeg := segFilesOf(j)[0]

	reading := make(chan struct{})
	goOn := make(chan struct{})
	var got []rec
	done := make(chan error, 1)
	go func() {
		done <- j.Replay(0, func(index uint64, data []byte) error {
			if index == 1 {
				close(reading)
				<-goOn
			}
			got = append(got, rec{index, data})
			return nil
		})
	}()
	<-reading
	if err := j.Release(firstSeg.last); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, spareName)); err != nil {
		t.Fatalf("no spare: %v", err)
	}
	// Roll into the spare, and fill it past what Replay has buffered.
	for m := len(segFilesOf(j)); len(segFilesOf(j)) < m+2; {
		n++
		if err := j.Append(n, big(n+100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	close(goOn)
	err := <-done
	for k, r := range got {
		want := uint64(k + 1)
		if r.index != want || !bytes.Equal(r.data, big(want)) {
			t.Fatalf("Replay returned record %d with other data than was appended (index %d)", want, r.index)
		}
	}
	if err == nil && uint64(len(got)) != n {
		t.Fatalf("Replay returned no error after %d records of %d", len(got), n)
	}
	if err != nil && j.FirstIndex() <= 1 {
		t.Fatalf("Replay failed (%v) with FirstIndex %d: the caller cannot tell a release", err, j.FirstIndex())
	}
	t.Logf("Replay read %d records, then: %v", len(got), err)
}

// A released segment whose file is already gone (removed by hand to free a
// full disk, say) is released as before: there is nothing to keep as the
// spare, and the next one released is kept instead. Release does not fail
// on it, again at every call, with the journal's start stuck before it.
func TestReleaseOfASegmentAlreadyGone(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 150})
	defer j.Close()
	appendRange(t, j, 1, 40)
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	segs := segFilesOf(j)
	if err := os.Remove(segs[0].path); err != nil {
		t.Fatal(err)
	}
	if err := j.Release(segs[1].last); err != nil {
		t.Fatalf("Release with the oldest segment's file gone: %v", err)
	}
	if got, want := j.FirstIndex(), segs[2].first; got != want {
		t.Fatalf("FirstIndex %d after Release, want %d", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, spareName)); err != nil {
		t.Fatalf("no spare kept of the segment released after the missing one: %v", err)
	}
	if _, err := os.Stat(segs[1].path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("released segment still under its name: %v", err)
	}
	rollOnce(t, j, 41)
}

// A spare removed by hand (a file named spare on a full disk) leaves the
// next segment to be a new file: the roll does not fail the journal.
func TestRollAfterTheSpareWasRemoved(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 150}
	j := openT(t, dir, opts)
	appendRange(t, j, 1, 40)
	if err := j.Release(20); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, spareName)); err != nil {
		t.Fatal(err)
	}
	next := rollOnce(t, j, 41)
	wantAfterReopen(t, j, dir, opts, next-1)
}
