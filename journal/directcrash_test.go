package journal

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestDirectCrashAfterAnyAppend copies the journal directory, as a crash
// would leave it with every completed write on disk, after each Append of
// records that end anywhere in a block, cross blocks and segments: the
// active segment then runs on with a direct write's zeros, and a segment
// just rolled from must already be cut back to its records, since Open
// calls anything after them in a segment that is not the last corruption.
// Every copy must open with every record appended, and replay them.
func TestDirectCrashAfterAnyAppend(t *testing.T) {
	src := t.TempDir()
	direct := directSupported(t, src)
	if !direct {
		t.Logf("%s takes no direct writes: the crash copies test the page cache", src)
	}
	opts := Options{SegmentSize: 64 << 10, MaxRecord: 16 << 20}
	j := openT(t, src, opts)
	defer j.Close()
	const n = 30
	for i := uint64(1); i <= n; i++ {
		data := bigPayload(i)
		if i%10 == 7 {
			// Keep the copies small: one big record, with gaps where
			// the write takes its data in place, is enough.
			data = data[:70000]
		}
		if err := j.Append(i, data); err != nil {
			t.Fatal(err)
		}
		if j.direct != direct {
			t.Fatalf("record %d: direct %v, want %v", i, j.direct, direct)
		}
		segs := segFiles(t, src)
		for _, p := range segs[:len(segs)-1] {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			recordOffsets(t, b) // fails unless the file ends at a record's end
		}
		dst := filepath.Join(t.TempDir(), "copy")
		copyDir(t, src, dst)
		c, err := Open(dst, opts)
		if err != nil {
			t.Fatalf("after record %d: Open of the crash copy: %v", i, err)
		}
		if c.FirstIndex() != 1 || c.LastIndex() != i {
			t.Fatalf("after record %d: crash copy holds %d..%d", i, c.FirstIndex(), c.LastIndex())
		}
		next := uint64(1)
		err = c.Replay(0, func(index uint64, data []byte) error {
			want := bigPayload(index)
			if index%10 == 7 {
				want = want[:70000]
			}
			if index != next || !bytes.Equal(data, want) {
				t.Fatalf("after record %d: replayed record %d (%d bytes), want %d", i, index, len(data), next)
			}
			next++
			return nil
		})
		if err != nil || next != i+1 {
			t.Fatalf("after record %d: replay of the crash copy: %v, through %d", i, err, next-1)
		}
		c.Close()
		os.RemoveAll(filepath.Dir(dst))
	}
	if len(segFiles(t, src)) < 3 {
		t.Fatalf("%d segments, want a few rolls", len(segFiles(t, src)))
	}
	gapped := 0
	for _, p := range segFiles(t, src) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range decodeSegment(t, b[:segSize(j, p)]) {
			if r.gaps > 0 {
				gapped++
			}
		}
	}
	if direct && gapped == 0 {
		t.Fatal("no record with gaps: the crash copies did not test them")
	}
}

// segSize is the size of the records of j's segment at path.
func segSize(j *Journal, path string) int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, s := range j.segs {
		if s.path == path {
			return s.size
		}
	}
	return 0
}

// TestDirectConcurrentReplay reads the journal with Replay, through the page
// cache, while records that cross blocks and segments are written directly
// (the secondary's applier and its history read the journal this way while
// groups arrive): each direct write rewrites the block a reader may just
// have cached, so a stale cached page would show as a record that fails
// its checksum or a torn tail.
func TestDirectConcurrentReplay(t *testing.T) {
	dir := t.TempDir()
	if !directSupported(t, dir) {
		t.Logf("%s takes no direct writes: the page cache alone is tested", dir)
	}
	j := openT(t, dir, Options{SegmentSize: 96 << 10})
	defer j.Close()
	const n = 300
	data := func(i uint64) []byte {
		b := make([]byte, int(i*997)%9000)
		for k := range b {
			b[k] = byte(i*131 + uint64(k)*7)
		}
		return b
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := uint64(1); i <= n; i++ {
			if err := j.Append(i, data(i)); err != nil {
				t.Error(err)
				return
			}
			if i%4 == 0 {
				if err := j.Sync(); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	// Each reader starts after the record it last saw, as the applier
	// does, and once in a while from the start.
	var seen uint64
	for round := 0; ; round++ {
		finished := false
		select {
		case <-done:
			finished = true
		default:
		}
		from := seen
		if round%8 == 0 {
			from = 0
		}
		last := j.LastIndex()
		next := from + 1
		err := j.Replay(from, func(index uint64, b []byte) error {
			if index != next || !bytes.Equal(b, data(index)) {
				t.Fatalf("replay after %d: record %d (%d bytes), want %d", from, index, len(b), next)
			}
			next++
			return nil
		})
		if err != nil {
			t.Fatalf("replay after %d: %v", from, err)
		}
		if next-1 < last {
			t.Fatalf("replay after %d ended at %d, LastIndex was already %d", from, next-1, last)
		}
		seen = next - 1
		if finished {
			break
		}
	}
	wg.Wait()
	if seen != n {
		t.Fatalf("last replay ended at %d, want %d", seen, n)
	}
}
