package journal

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden-v3.hex and golden-v3-gaps.hex")

type rec struct {
	index uint64
	data  []byte
}

// payload is record i's data: lengths vary from 0 to 40 bytes so that every
// amount of padding occurs, and the content depends on i so that records
// can't be confused with one another.
func payload(i uint64) []byte {
	n := int(i*7) % 41
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(i*31 + uint64(k))
	}
	return b
}

func openT(t testing.TB, dir string, opts Options) *Journal {
	t.Helper()
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return j
}

func appendRange(t testing.TB, j *Journal, from, to uint64) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := j.Append(i, payload(i)); err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
	}
}

func replayAll(t testing.TB, j *Journal, after uint64) []rec {
	t.Helper()
	var out []rec
	err := j.Replay(after, func(index uint64, data []byte) error {
		out = append(out, rec{index, data})
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%d): %v", after, err)
	}
	return out
}

// wantRange checks that got is exactly records from..to with their payloads.
func wantRange(t testing.TB, got []rec, from, to uint64) {
	t.Helper()
	var n uint64
	if to >= from {
		n = to - from + 1
	}
	if uint64(len(got)) != n {
		t.Fatalf("replayed %d records, want %d (%d..%d)", len(got), n, from, to)
	}
	for k, r := range got {
		i := from + uint64(k)
		if r.index != i || !bytes.Equal(r.data, payload(i)) {
			t.Fatalf("record %d: got index %d data %x, want index %d data %x", k, r.index, r.data, i, payload(i))
		}
	}
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range segFiles(t, src) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(p)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// recordOffsets parses a segment independently of the package and returns
// the offset of each record plus the end offset.
func recordOffsets(t testing.TB, seg []byte) []int64 {
	t.Helper()
	offs := []int64{}
	end := int64(headerSizeOf(seg))
	for _, r := range decodeSegment(t, seg) {
		offs = append(offs, r.off)
		end = r.off + r.frame
	}
	return append(offs, end)
}

// buildJournal writes records 1..n with the given segment size, closes the
// journal and returns its directory.
func buildJournal(t testing.TB, n uint64, segSize int64) string {
	t.Helper()
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: segSize})
	appendRange(t, j, 1, n)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 200}
	j := openT(t, dir, opts)
	if j.FirstIndex() != 0 || j.LastIndex() != 0 || j.Bytes() != 0 {
		t.Fatalf("empty journal: first %d last %d bytes %d", j.FirstIndex(), j.LastIndex(), j.Bytes())
	}
	appendRange(t, j, 1, 50)
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	wantRange(t, replayAll(t, j, 0), 1, 50)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	segs := segFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("got %d segments, want several", len(segs))
	}
	var total int64
	for _, p := range segs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		first := binary.BigEndian.Uint64(b[8:16])
		if want := fmt.Sprintf("%016x.seg", first); filepath.Base(p) != want {
			t.Errorf("segment %s has first index %d", p, first)
		}
		total += int64(len(b))
	}

	j = openT(t, dir, opts)
	defer j.Close()
	if j.FirstIndex() != 1 || j.LastIndex() != 50 {
		t.Fatalf("reopened: first %d last %d, want 1 50", j.FirstIndex(), j.LastIndex())
	}
	if j.Bytes() != total {
		t.Fatalf("Bytes() = %d, files hold %d", j.Bytes(), total)
	}
	wantRange(t, replayAll(t, j, 0), 1, 50)
	wantRange(t, replayAll(t, j, 20), 21, 50)
	wantRange(t, replayAll(t, j, 49), 50, 50)
	wantRange(t, replayAll(t, j, 50), 51, 50)
	wantRange(t, replayAll(t, j, 1000), 51, 50)

	if err := j.Append(52, payload(52)); err == nil {
		t.Fatal("Append(52) after 50 succeeded")
	}
	if err := j.Append(50, payload(50)); err == nil {
		t.Fatal("Append(50) after 50 succeeded")
	}
	appendRange(t, j, 51, 60)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, dir, opts)
	wantRange(t, replayAll(t, j, 0), 1, 60)
}

func TestReplayStopsOnError(t *testing.T) {
	dir := buildJournal(t, 30, 200)
	j := openT(t, dir, Options{})
	defer j.Close()
	stop := errors.New("stop")
	var seen []uint64
	err := j.Replay(5, func(index uint64, data []byte) error {
		seen = append(seen, index)
		if index == 12 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("Replay returned %v, want fn's error unwrapped", err)
	}
	if want := []uint64{6, 7, 8, 9, 10, 11, 12}; !slices.Equal(seen, want) {
		t.Fatalf("replayed %v, want %v", seen, want)
	}
}

func TestAppendRules(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{MaxRecord: 100})
	if err := j.Append(0, nil); err == nil {
		t.Fatal("Append(0) succeeded")
	}
	if err := j.Append(7, make([]byte, 101)); err == nil {
		t.Fatal("Append of a record over MaxRecord succeeded")
	}
	if j.LastIndex() != 0 {
		t.Fatalf("failed appends changed LastIndex to %d", j.LastIndex())
	}
	// The first record may have any index.
	if err := j.Append(7, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(9, nil); err == nil {
		t.Fatal("non-contiguous Append succeeded")
	}
	if err := j.Append(8, nil); err != nil {
		t.Fatal(err)
	}
	if j.FirstIndex() != 7 || j.LastIndex() != 8 {
		t.Fatalf("first %d last %d, want 7 8", j.FirstIndex(), j.LastIndex())
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(9, nil); err == nil {
		t.Fatal("Append after Close succeeded")
	}
	if err := j.Sync(); err == nil {
		t.Fatal("Sync after Close succeeded")
	}
	j = openT(t, dir, Options{MaxRecord: 100})
	defer j.Close()
	got := replayAll(t, j, 0)
	if len(got) != 2 || got[0].index != 7 || len(got[0].data) != 100 || got[1].index != 8 || len(got[1].data) != 0 {
		t.Fatalf("replayed %v", got)
	}
}

func TestRelease(t *testing.T) {
	dir := buildJournal(t, 60, 150)
	j := openT(t, dir, Options{SegmentSize: 150})
	defer j.Close()

	type span struct{ first, last uint64 }
	spans := func() []span {
		var s []span
		for _, p := range segFiles(t, dir) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			offs := recordOffsets(t, b)
			lastOff := offs[len(offs)-2]
			s = append(s, span{binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint64(b[lastOff+8:])})
		}
		return s
	}
	before := spans()
	if len(before) < 4 {
		t.Fatalf("only %d segments", len(before))
	}
	bytesBefore := j.Bytes()

	// Releasing up to one short of the end of the second segment may only
	// remove the first.
	through := before[1].last - 1
	if err := j.Release(through); err != nil {
		t.Fatal(err)
	}
	after := spans()
	if !slices.Equal(after, before[1:]) {
		t.Fatalf("after Release(%d): segments %v, want %v", through, after, before[1:])
	}
	if j.FirstIndex() != before[1].first {
		t.Fatalf("FirstIndex %d, want %d", j.FirstIndex(), before[1].first)
	}
	if j.Bytes() >= bytesBefore {
		t.Fatalf("Bytes did not shrink: %d -> %d", bytesBefore, j.Bytes())
	}
	wantRange(t, replayAll(t, j, 0), before[1].first, 60)

	// Exactly the end of a segment releases it.
	if err := j.Release(before[2].last); err != nil {
		t.Fatal(err)
	}
	if got := spans(); !slices.Equal(got, before[3:]) {
		t.Fatalf("after Release(%d): segments %v, want %v", before[2].last, got, before[3:])
	}

	// The active segment survives even when all its records are released.
	if err := j.Release(1 << 40); err != nil {
		t.Fatal(err)
	}
	got := spans()
	if len(got) != 1 || got[0] != before[len(before)-1] {
		t.Fatalf("after releasing everything: %v, want only the active %v", got, before[len(before)-1])
	}
	active := before[len(before)-1]
	if j.FirstIndex() != active.first || j.LastIndex() != 60 {
		t.Fatalf("first %d last %d, want %d 60", j.FirstIndex(), j.LastIndex(), active.first)
	}
	var sum int64
	for _, p := range segFiles(t, dir) {
		sum += fileSize(t, p)
	}
	if j.Bytes() != sum {
		t.Fatalf("Bytes() = %d, files hold %d", j.Bytes(), sum)
	}

	appendRange(t, j, 61, 70)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, dir, Options{SegmentSize: 150})
	if j.FirstIndex() != active.first {
		t.Fatalf("reopened FirstIndex %d, want %d", j.FirstIndex(), active.first)
	}
	wantRange(t, replayAll(t, j, 0), active.first, 70)
}

// TestTornTailEveryOffset cuts the last record at every byte and checks that
// recovery drops exactly that record and leaves a journal that works.
func TestTornTailEveryOffset(t *testing.T) {
	opts := Options{SegmentSize: 300}
	src := t.TempDir()
	j := openT(t, src, opts)
	// Go on until the last segment holds two records or more and the last
	// record has both data and padding, so every part of a record is cut.
	var n uint64
	var orig []byte
	var offs []int64
	for n < 20 || len(offs) < 3 || len(payload(n)) == 0 || len(payload(n))%8 == 0 {
		n++
		appendRange(t, j, n, n)
		segs := segFiles(t, src)
		var err error
		if orig, err = os.ReadFile(segs[len(segs)-1]); err != nil {
			t.Fatal(err)
		}
		// A direct write leaves zeros up to the block's end until Close.
		orig = orig[:j.segs[len(j.segs)-1].size]
		offs = recordOffsets(t, orig)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, src)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	lastSeg := filepath.Base(segs[len(segs)-1])
	start, end := offs[len(offs)-2], offs[len(offs)-1] // record n

	for cut := start; cut < end; cut++ {
		j, dir, path := openCut(t, src, lastSeg, cut, opts)
		wantRange(t, replayAll(t, j, 0), 1, n-1)
		if j.LastIndex() != n-1 {
			t.Fatalf("cut at %d: LastIndex %d", cut, j.LastIndex())
		}
		if got := fileSize(t, path); got != start {
			t.Fatalf("cut at %d: file is %d bytes, want truncated to %d", cut, got, start)
		}
		if err := j.Append(n, payload(n)); err != nil {
			t.Fatalf("cut at %d: Append(%d): %v", cut, n, err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		j = openT(t, dir, opts)
		wantRange(t, replayAll(t, j, 0), 1, n)
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, orig) {
			t.Fatalf("cut at %d: rewritten segment differs from the original", cut)
		}
	}
}

// openCut copies the journal in src to a new directory, cuts its segment
// named seg at byte cut, as a crash mid-append leaves it, and opens it:
// it returns the journal, the directory and the segment's path.
func openCut(t *testing.T, src, seg string, cut int64, opts Options) (*Journal, string, string) {
	t.Helper()
	dir := t.TempDir()
	copyDir(t, src, dir)
	path := filepath.Join(dir, seg)
	if err := os.Truncate(path, cut); err != nil {
		t.Fatal(err)
	}
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("cut at %d: Open: %v", cut, err)
	}
	return j, dir, path
}

// TestTornTailNewSegment cuts a segment that holds one record, the state a
// crash leaves right after a roll, at every byte including inside its
// header: the segment must go and the journal end at the previous one.
func TestTornTailNewSegment(t *testing.T) {
	opts := Options{SegmentSize: 300}
	src := t.TempDir()
	j := openT(t, src, opts)
	var n uint64
	for len(segFiles(t, src)) < 3 {
		n++
		appendRange(t, j, n, n)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, src)
	lastSeg := filepath.Base(segs[len(segs)-1])
	orig, err := os.ReadFile(segs[len(segs)-1])
	if err != nil {
		t.Fatal(err)
	}
	if len(recordOffsets(t, orig)) != 2 {
		t.Fatalf("last segment should hold exactly record %d", n)
	}
	for cut := int64(0); cut < int64(len(orig)); cut++ {
		j, dir, path := openCut(t, src, lastSeg, cut, opts)
		wantRange(t, replayAll(t, j, 0), 1, n-1)
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("cut at %d: segment without a complete record was kept (%v)", cut, err)
		}
		appendRange(t, j, n, n+1)
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		j = openT(t, dir, opts)
		wantRange(t, replayAll(t, j, 0), 1, n+1)
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTornTailZeroed(t *testing.T) {
	dir := buildJournal(t, 20, 1<<20)
	path := segFiles(t, dir)[0]
	size := fileSize(t, path)
	// What preallocation, or a file system that grew the file before the
	// data arrived, leaves behind.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	j := openT(t, dir, Options{})
	defer j.Close()
	wantRange(t, replayAll(t, j, 0), 1, 20)
	if got := fileSize(t, path); got != size {
		t.Fatalf("zero tail not truncated: %d bytes, want %d", got, size)
	}
}

func TestEmptyOrTornHeaderRemoved(t *testing.T) {
	for name, content := range map[string][]byte{
		"empty":                {},
		"short":                []byte("DXJL\x00\x00"),
		"zero header":          make([]byte, 16),
		"zero header and data": make([]byte, 100),
		"header only": func() []byte {
			b := []byte("DXJL\x00\x00\x00\x01")
			return binary.BigEndian.AppendUint64(b, 11)
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			dir := buildJournal(t, 10, 1<<20)
			path := filepath.Join(dir, fmt.Sprintf("%016x.seg", 11))
			if err := os.WriteFile(path, content, 0o644); err != nil {
				t.Fatal(err)
			}
			j := openT(t, dir, Options{})
			defer j.Close()
			wantRange(t, replayAll(t, j, 0), 1, 10)
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("torn segment was kept (%v)", err)
			}
			appendRange(t, j, 11, 12)
		})
	}
}

func TestOnlySegmentTornStartsEmpty(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	appendRange(t, j, 100, 100)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	path := segFiles(t, dir)[0]
	if err := os.Truncate(path, fileSize(t, path)-1); err != nil {
		t.Fatal(err)
	}
	j = openT(t, dir, Options{})
	defer j.Close()
	if j.FirstIndex() != 0 || j.LastIndex() != 0 {
		t.Fatalf("first %d last %d, want an empty journal", j.FirstIndex(), j.LastIndex())
	}
	// Empty again, so the first record may again have any index.
	appendRange(t, j, 5, 6)
	wantRange(t, replayAll(t, j, 0), 5, 6)
}

func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFlippedByteInLastRecordDropsIt(t *testing.T) {
	const n = 30
	dir := buildJournal(t, n, 300)
	segs := segFiles(t, dir)
	path := segs[len(segs)-1]
	b, _ := os.ReadFile(path)
	offs := recordOffsets(t, b)
	start := offs[len(offs)-2]
	if len(payload(n)) == 0 {
		t.Fatal("record n needs data")
	}
	flipByte(t, path, start+16)
	j := openT(t, dir, Options{SegmentSize: 300})
	defer j.Close()
	wantRange(t, replayAll(t, j, 0), 1, n-1)
	if got := fileSize(t, path); got != start {
		t.Fatalf("file is %d bytes, want truncated to %d", got, start)
	}
}

func TestDamageInEarlierSegmentIsCorrupt(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, segs []string)
	}{
		{"flipped data byte", func(t *testing.T, segs []string) {
			flipByte(t, segs[1], segmentHeaderSize+16)
		}},
		{"flipped length", func(t *testing.T, segs []string) {
			flipByte(t, segs[1], segmentHeaderSize+3)
		}},
		{"flipped index", func(t *testing.T, segs []string) {
			flipByte(t, segs[1], segmentHeaderSize+15)
		}},
		{"torn record", func(t *testing.T, segs []string) {
			if err := os.Truncate(segs[1], fileSize(t, segs[1])-3); err != nil {
				t.Fatal(err)
			}
		}},
		{"zeroed tail", func(t *testing.T, segs []string) {
			f, err := os.OpenFile(segs[1], os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(make([]byte, 64))
			f.Close()
		}},
		{"missing segment", func(t *testing.T, segs []string) {
			if err := os.Remove(segs[2]); err != nil {
				t.Fatal(err)
			}
		}},
		{"bad magic", func(t *testing.T, segs []string) {
			flipByte(t, segs[1], 0)
		}},
		{"bad magic in last segment", func(t *testing.T, segs []string) {
			flipByte(t, segs[len(segs)-1], 1)
		}},
		{"unknown version", func(t *testing.T, segs []string) {
			flipByte(t, segs[len(segs)-1], 7)
		}},
		{"header disagrees with name", func(t *testing.T, segs []string) {
			flipByte(t, segs[1], 15)
		}},
		{"index gap in last segment", func(t *testing.T, segs []string) {
			// A record that is intact but out of sequence was not torn.
			path := segs[len(segs)-1]
			b, _ := os.ReadFile(path)
			offs := recordOffsets(t, b)
			last := offs[len(offs)-2]
			binary.BigEndian.PutUint64(b[last+8:], 1000)
			data := b[last+16 : offs[len(offs)-1]]
			data = data[:binary.BigEndian.Uint32(b[last:])]
			binary.BigEndian.PutUint32(b[last+4:], crcOf(b, 1000, data))
			os.WriteFile(path, b, 0o644)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := buildJournal(t, 40, 200)
			segs := segFiles(t, dir)
			if len(segs) < 4 {
				t.Fatalf("only %d segments", len(segs))
			}
			c.damage(t, segs)
			sizes := map[string]int64{}
			for _, p := range segFiles(t, dir) {
				sizes[p] = fileSize(t, p)
			}
			j, err := Open(dir, Options{SegmentSize: 200})
			if err == nil {
				j.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), ".seg") || !strings.Contains(err.Error(), "offset") {
				t.Errorf("error %q should name the file and offset", err)
			}
			t.Log(err)
			for p, size := range sizes {
				if got := fileSize(t, p); got != size {
					t.Errorf("Open changed %s from %d to %d bytes", p, size, got)
				}
			}
		})
	}
}

// crcOf is a record's checksum in the segment seg, computed apart from the
// package: CRC-32C of the salt (version 2), the index and the data.
func crcOf(seg []byte, index uint64, data []byte) uint32 {
	var b []byte
	if headerSizeOf(seg) == 24 {
		b = append(b, seg[16:24]...)
	}
	b = binary.BigEndian.AppendUint64(b, index)
	return crc32.Checksum(append(b, data...), crc32.MakeTable(crc32.Castagnoli))
}

// headerSizeOf is the size of the header of the segment seg, by its
// version, read apart from the package.
func headerSizeOf(seg []byte) int {
	if len(seg) >= 8 && binary.BigEndian.Uint32(seg[4:8]) == 1 {
		return 16
	}
	return 24
}

// fixSalt makes every segment the test creates take salt, so that its
// bytes are the same from run to run.
func fixSalt(t testing.TB, salt uint64) {
	t.Helper()
	old := newSalt
	newSalt = func() (s [saltSize]byte) {
		binary.BigEndian.PutUint64(s[:], salt)
		return s
	}
	t.Cleanup(func() { newSalt = old })
}

func TestSmallerMaxRecordDoesNotDestroyRecords(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	big := bytes.Repeat([]byte{7}, 1000)
	if err := j.Append(1, big); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	path := segFiles(t, dir)[0]
	size := fileSize(t, path)
	if _, err := Open(dir, Options{MaxRecord: 100}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with smaller MaxRecord: %v, want ErrCorrupt", err)
	}
	if fileSize(t, path) != size {
		t.Fatal("Open truncated an intact record")
	}
	j = openT(t, dir, Options{})
	defer j.Close()
	if got := replayAll(t, j, 0); len(got) != 1 || !bytes.Equal(got[0].data, big) {
		t.Fatal("record lost")
	}
}

// TestHugeLengthDoesNotAllocate gives Open lengths that a damaged file might
// claim and checks it allocates nothing near them.
func TestHugeLengthDoesNotAllocate(t *testing.T) {
	for _, length := range []uint32{200 << 20, 256 << 20, 1<<32 - 1} {
		dir := t.TempDir()
		seg := []byte("DXJL\x00\x00\x00\x01")
		seg = binary.BigEndian.AppendUint64(seg, 1)
		seg = binary.BigEndian.AppendUint32(seg, length)
		seg = binary.BigEndian.AppendUint32(seg, 0x12345678)
		seg = binary.BigEndian.AppendUint64(seg, 1)
		seg = append(seg, make([]byte, 1000)...)
		if err := os.WriteFile(filepath.Join(dir, "0000000000000001.seg"), seg, 0o644); err != nil {
			t.Fatal(err)
		}
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		j, err := Open(dir, Options{})
		runtime.ReadMemStats(&m1)
		if err != nil {
			t.Fatal(err)
		}
		if j.LastIndex() != 0 {
			t.Fatalf("length %d: record accepted", length)
		}
		j.Close()
		if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 1<<20 {
			t.Fatalf("length %d: Open allocated %d bytes", length, alloc)
		}
	}
}

func TestConcurrentReplayAndAppend(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 500})
	defer j.Close()
	const n = 400
	var wg sync.WaitGroup
	wg.Add(1)
	done := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(done)
		for i := uint64(1); i <= n; i++ {
			if err := j.Append(i, payload(i)); err != nil {
				t.Error(err)
				return
			}
			if i%50 == 0 {
				if err := j.Sync(); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		last := j.LastIndex()
		got := replayAll(t, j, 0)
		if len(got) > 0 {
			wantRange(t, got, 1, got[len(got)-1].index)
		}
		if uint64(len(got)) < last {
			t.Fatalf("replayed %d records, LastIndex was already %d", len(got), last)
		}
	}
	wg.Wait()
	wantRange(t, replayAll(t, j, 0), 1, n)
}

func TestSecondOpenRefused(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	if j2, err := Open(dir, Options{}); err == nil {
		j2.Close()
		t.Fatal("second Open of an open journal succeeded")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, dir, Options{})
	j.Close()
}

// Golden records: fixed, small, and of lengths that need padding.
var goldenRecords = []rec{
	{1, []byte("hello")},
	{2, []byte("consistency group 2")},
}

const (
	goldenFile   = "testdata/golden-v3.hex"
	goldenFileV2 = "testdata/golden-v2.hex"
	goldenFileV1 = "testdata/golden-v1.hex"
	goldenSalt   = 0x4d44675f7e59f985
)

// TestGolden pins the on-disk format: a change to what Append writes fails
// it, and the stored bytes must still read back.
func TestGolden(t *testing.T) {
	fixSalt(t, goldenSalt)
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	for _, r := range goldenRecords {
		if err := j.Append(r.index, r.data); err != nil {
			t.Fatal(err)
		}
	}
	got := closeSegments(t, j, dir, 1)[0]
	dump := "# " + segmentName(1) + ": version 3, salt 4d44675f7e59f985, records 1 \"hello\" and 2 \"consistency group 2\"\n" + hex.Dump(got)
	if *update {
		if err := os.WriteFile(goldenFile, []byte(dump), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if string(want) != dump {
		t.Fatalf("segment bytes differ from %s:\ngot:\n%s\nwant:\n%s", goldenFile, dump, want)
	}
	readGolden(t, goldenFile)
}

// TestGoldenV1 reads the segments of version 1, which journals written
// before version 2 hold, and appends to one as it was written: the
// records a version 1 segment takes are of version 1 (their checksums
// without a salt), and the segment after it is of version 2.
func TestGoldenV1(t *testing.T) {
	dir := readGolden(t, goldenFileV1)
	want := parseDump(t, mustRead(t, goldenFileV1))
	j := openT(t, dir, Options{SegmentSize: int64(len(want)) + 30})
	appendRange(t, j, 3, 5)
	segs := closeSegments(t, j, dir, 2) // the version 1 one and a version 2 one
	b := segs[0]
	if !bytes.Equal(b[:len(want)], want) {
		t.Fatal("appending changed the version 1 records")
	}
	offs := recordOffsets(t, b)
	last := offs[len(offs)-2]
	n := binary.BigEndian.Uint32(b[last:])
	if got, want := binary.BigEndian.Uint32(b[last+4:]), crcOf(b, 3, b[last+16:last+16+int64(n)]); len(offs) != 4 || got != want {
		t.Fatalf("record 3 in the version 1 segment: %d records, checksum %08x, want %08x (version 1)", len(offs)-1, got, want)
	}
	b2 := segs[1]
	if v := binary.BigEndian.Uint32(b2[4:8]); v != segmentVersion {
		t.Fatalf("the segment after a version 1 one is of version %d", v)
	}
	j = openT(t, dir, Options{})
	defer j.Close()
	got := replayAll(t, j, 0)
	for k, r := range goldenRecords {
		if got[k].index != r.index || !bytes.Equal(got[k].data, r.data) {
			t.Fatalf("record %d: %d %q", k, got[k].index, got[k].data)
		}
	}
	wantRange(t, got[2:], 3, 5)
}

// closeSegments closes j and returns the bytes of the n segment files in
// its directory dir, oldest first.
func closeSegments(t testing.TB, j *Journal, dir string, n int) [][]byte {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	paths := segFiles(t, dir)
	if len(paths) != n {
		t.Fatalf("%d segments, want %d", len(paths), n)
	}
	var segs [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, b)
	}
	return segs
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readGolden opens the stored bytes, not this build's output, as the only
// segment of a journal, checks that it replays goldenRecords, and returns
// the journal's directory.
func readGolden(t *testing.T, file string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "0000000000000001.seg"), parseDump(t, mustRead(t, file)), 0o644); err != nil {
		t.Fatal(err)
	}
	j := openT(t, dir, Options{})
	defer j.Close()
	replayed := replayAll(t, j, 0)
	if len(replayed) != len(goldenRecords) {
		t.Fatalf("%s: replayed %d records", file, len(replayed))
	}
	for k, r := range replayed {
		if r.index != goldenRecords[k].index || !bytes.Equal(r.data, goldenRecords[k].data) {
			t.Fatalf("%s: record %d: %d %q", file, k, r.index, r.data)
		}
	}
	return dir
}

// TestAppendSumWritesWhatAppendWrites: a record appended with its data's
// checksum given, small or large, empty or across a segment roll, whole or
// in parts (AppendParts: one part, many small ones, more than one vectored
// write takes, empty ones), is the same bytes on disk as one appended with
// Append, golden records included. Through the page cache: a direct write's
// records have gaps that depend on where the parts lie in memory
// (TestDirectRecordsWithGaps).
func TestAppendSumWritesWhatAppendWrites(t *testing.T) {
	records := [][]byte{[]byte("hello"), {}, []byte("consistency group 2"), bytes.Repeat([]byte{0xa5}, copyThreshold+3), make([]byte, 1<<20)}
	for i := range records[4] {
		records[4][i] = byte(i * 31)
	}
	// split cuts data into pieces of 0 to 2*n bytes.
	split := func(data []byte, n int) [][]byte {
		var parts [][]byte
		for i := 0; len(data) > 0; i++ {
			k := min(len(data), (i*7919)%(2*n+1))
			parts = append(parts, data[:k])
			data = data[k:]
		}
		return append(parts, nil)
	}
	type how int
	const (
		whole how = iota
		sum
		inParts
		inSmallParts
	)
	fixSalt(t, goldenSalt)
	write := func(h how) []byte {
		dir := t.TempDir()
		j := openT(t, dir, Options{SegmentSize: 1 << 16, Buffered: true})
		for k, data := range records {
			var err error
			crc := crc32.Checksum(data, castagnoli)
			switch h {
			case whole:
				err = j.Append(uint64(k+1), data)
			case sum:
				err = j.AppendSum(uint64(k+1), data, crc)
			case inParts:
				err = j.AppendParts(uint64(k+1), split(data, 4096), crc)
			case inSmallParts:
				err = j.AppendParts(uint64(k+1), split(data, 200), crc)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		var all []byte
		for _, seg := range segFiles(t, dir) {
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		j = openT(t, dir, Options{SegmentSize: 1 << 16})
		defer j.Close()
		if got := replayAll(t, j, 0); len(got) != len(records) {
			t.Fatalf("replayed %d records of %d", len(got), len(records))
		}
		return all
	}
	want := write(whole)
	for _, h := range []how{sum, inParts, inSmallParts} {
		if got := write(h); !bytes.Equal(got, want) {
			t.Fatalf("AppendSum or AppendParts (%d) wrote other bytes than Append", h)
		}
	}
}

// parseDump reads hex.Dump output, skipping # comment lines.
func parseDump(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for _, line := range strings.Split(s, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		hexPart, _, _ := strings.Cut(line, "|")
		fields := strings.Fields(hexPart)
		for _, f := range fields[1:] {
			b, err := hex.DecodeString(f)
			if err != nil {
				t.Fatalf("bad dump line %q: %v", line, err)
			}
			out = append(out, b...)
		}
	}
	return out
}

// TestDocExample keeps the worked example in doc.go true.
func TestDocExample(t *testing.T) {
	fixSalt(t, 0x0102030405060708)
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	if err := j.Append(1, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	j.Close()
	b, _ := os.ReadFile(segFiles(t, dir)[0])
	want, _ := hex.DecodeString("00000003a2c351480000000000000001616263" + "0000000000")
	if !bytes.Equal(b[24:], want) {
		t.Fatalf("record bytes %x, doc.go says %x", b[24:], want)
	}
	if !bytes.Equal(b[:24], []byte("DXJL\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x01\x01\x02\x03\x04\x05\x06\x07\x08")) {
		t.Fatalf("header %x", b[:24])
	}
}

// FuzzOpen writes arbitrary bytes as the last segment, optionally after a
// valid one, and checks that Open neither panics nor returns a record the
// bytes do not hold with a correct CRC.
func FuzzOpen(f *testing.F) {
	valid := func(first uint64, n int) []byte {
		dir := f.TempDir()
		j := openT(f, dir, Options{})
		appendRange(f, j, first, first+uint64(n)-1)
		j.Close()
		b, err := os.ReadFile(segFiles(f, dir)[0])
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	seg := valid(1, 6)
	f.Add(seg, false)
	f.Add(seg[:len(seg)-5], false)
	f.Add(append(slices.Clone(seg), make([]byte, 40)...), false)
	flipped := slices.Clone(seg)
	flipped[40] ^= 1
	f.Add(flipped, false)
	f.Add(valid(4, 3), true)
	f.Add(valid(5, 3), true)
	f.Add([]byte{}, true)
	f.Add([]byte("DXJL\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\xff\xff\xff\xff"), false)
	// Version 1, as journals before version 2 hold.
	v1, err := os.ReadFile(goldenFileV1)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(parseDump(&testing.T{}, string(v1)), false)
	// Version 2, and version 3 with a record with gaps: whole, cut in its
	// table, its gaps and its data, its table's entries out of order.
	v2, err := os.ReadFile(goldenFileV2)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(parseDump(&testing.T{}, string(v2)), false)
	gaps, err := os.ReadFile(goldenFileGaps)
	if err != nil {
		f.Fatal(err)
	}
	g := parseDump(&testing.T{}, string(gaps))
	f.Add(g, false)
	for _, cut := range []int{48 + 20, 48 + 40, 48 + 100, 48 + 300, len(g) - 1} {
		f.Add(g[:cut], false)
	}
	swapped := slices.Clone(g)
	copy(swapped[48+32:48+40], g[48+40:48+48])
	copy(swapped[48+40:48+48], g[48+32:48+40])
	f.Add(swapped, false)
	// A recycled file cut part way: new records, then an earlier life's.
	old := valid(1, 30)
	recycled := append(slices.Clone(seg[:len(seg)-9]), old[len(seg)-9:]...)
	f.Add(recycled, false)
	clear(old[:segmentHeaderSize])
	f.Add(old, true)

	prev := valid(1, 3)

	const maxRecord = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte, withPrev bool) {
		dir := t.TempDir()
		if withPrev {
			if err := os.WriteFile(filepath.Join(dir, "0000000000000001.seg"), prev, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// Name the file after the header's first index, as a writer would,
		// so the fuzzer can get past that check.
		var first uint64 = 1
		if len(data) >= 16 {
			first = binary.BigEndian.Uint64(data[8:16])
		}
		if withPrev && first <= 1 {
			first = 4
		}
		path := filepath.Join(dir, fmt.Sprintf("%016x.seg", first))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}

		j, err := Open(dir, Options{MaxRecord: maxRecord})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open failed without ErrCorrupt: %v", err)
			}
			return
		}
		var got []rec
		if err := j.Replay(0, func(index uint64, d []byte) error {
			got = append(got, rec{index, d})
			return nil
		}); err != nil {
			t.Fatalf("Replay: %v", err)
		}
		last := j.LastIndex()
		j.Close()

		if withPrev {
			if len(got) < 3 || got[0].index != 1 || got[2].index != 3 {
				t.Fatalf("valid earlier segment not replayed: %v", got)
			}
			for k := range 3 {
				if !bytes.Equal(got[k].data, payload(uint64(k+1))) {
					t.Fatalf("earlier record %d altered", k+1)
				}
			}
			got = got[3:]
		}
		for k := 1; k < len(got); k++ {
			if got[k].index != got[k-1].index+1 {
				t.Fatalf("indexes not contiguous: %d after %d", got[k].index, got[k-1].index)
			}
		}
		if len(got) > 0 && last != got[len(got)-1].index {
			t.Fatalf("LastIndex %d, last replayed %d", last, got[len(got)-1].index)
		}
		// Every record from the fuzzed file must be there, byte for byte,
		// under a CRC this test computes itself.
		off := headerSizeOf(data)
		for _, r := range got {
			d, bad := decodeRecord(data, off)
			if bad != "" {
				t.Fatalf("record %d replayed where the file holds none: %s", r.index, bad)
			}
			if d.index != r.index || len(d.data) > maxRecord {
				t.Fatalf("record %d: header says index %d length %d", r.index, d.index, len(d.data))
			}
			if !bytes.Equal(d.data, r.data) {
				t.Fatalf("record %d: data differs from the file", r.index)
			}
			if !d.crcOK {
				t.Fatalf("record %d returned with a bad CRC", r.index)
			}
			off += int(d.frame)
		}
		st, err := os.Stat(path)
		switch {
		case len(got) == 0 && !errors.Is(err, os.ErrNotExist):
			t.Fatalf("segment with no valid record kept: %v", err)
		case len(got) > 0 && (err != nil || st.Size() != int64(off)):
			t.Fatalf("segment not truncated to its last valid record at %d: %v %v", off, st, err)
		}

		// Recovery must be stable: a second Open finds nothing more to do.
		j, err = Open(dir, Options{MaxRecord: maxRecord})
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		defer j.Close()
		again := 0
		j.Replay(0, func(uint64, []byte) error { again++; return nil })
		if want := len(got) + map[bool]int{true: 3}[withPrev]; again != want {
			t.Fatalf("second Open replays %d records, first %d", again, want)
		}
	})
}

func BenchmarkAppendSync1MiB(b *testing.B) {
	dir := b.TempDir()
	j := openT(b, dir, Options{})
	defer j.Close()
	data := make([]byte, 1<<20)
	for k := range data {
		data[k] = byte(k)
	}
	b.SetBytes(int64(len(data)))
	var i uint64
	for b.Loop() {
		i++
		if err := j.Append(i, data); err != nil {
			b.Fatal(err)
		}
		if err := j.Sync(); err != nil {
			b.Fatal(err)
		}
		// Keep the disk use of a long run bounded, as the applier would.
		if i%256 == 0 {
			if err := j.Release(i); err != nil {
				b.Fatal(err)
			}
		}
	}
}
