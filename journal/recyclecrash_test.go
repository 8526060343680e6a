package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// staleSegment writes records first..last, record i's data data(i), into
// one segment with opts and returns that segment's bytes as a spare holds
// them: its header zeroed.
func staleSegment(t *testing.T, first, last uint64, data func(uint64) []byte, opts Options) []byte {
	t.Helper()
	dir := t.TempDir()
	j := openT(t, dir, opts)
	for i := first; i <= last; i++ {
		if err := j.Append(i, data(i)); err != nil {
			t.Fatal(err)
		}
	}
	b := closeSegments(t, j, dir, 1)[0]
	clear(b[:segmentHeaderSize])
	return b
}

// TestRecycledSegmentTornAtEveryOffset models a crash while a recycled file
// is being written as a new segment: the file is a spare, an old segment
// whose header was zeroed (records of an earlier life at other offsets,
// or, in a journal begun again, records of the same indexes and lengths
// with other data at the very offsets the new ones take), and the new
// segment's bytes reached the disk only up to cut (the header, in one
// sector, whole or not at all). Whatever the cut, Open must start, keep
// exactly the new records wholly before cut, never one of the old life's
// as a new one, and leave a journal that appends and reopens.
func TestRecycledSegmentTornAtEveryOffset(t *testing.T) {
	opts := Options{SegmentSize: 1 << 20}
	// The journal before the new segment: records 1..10, synced.
	src := t.TempDir()
	j := openT(t, src, opts)
	appendRange(t, j, 1, 10)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// The new segment, records 11..30, as the writer means it.
	fresh := t.TempDir()
	copyDir(t, src, fresh)
	j = openT(t, fresh, Options{SegmentSize: 1})
	appendRange(t, j, 11, 30)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, p := range segFiles(t, fresh) {
		if filepath.Base(p) == segmentName(11) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			want = b
		}
	}
	if want == nil {
		t.Fatalf("no segment starting at 11 in %v", segFiles(t, fresh))
	}
	offs := recordOffsets(t, want)

	// Old lives of the file: the same records' payloads under older
	// indexes (so same lengths, shifted), and a segment whose records
	// fall on the new ones' offsets exactly.
	olds := map[string][]byte{
		"older records":         staleSegment(t, 1, 60, payload, opts),
		"same lengths, shifted": staleSegment(t, 4, 80, payload, opts),
		"same indexes, other data": staleSegment(t, 11, 60, func(i uint64) []byte {
			b := payload(i)
			for k := range b {
				b[k] ^= 0x5a
			}
			return b
		}, opts),
	}
	for name, old := range olds {
		if len(old) <= len(want) {
			t.Fatalf("%s: old segment of %d bytes does not outlast the new one (%d)", name, len(old), len(want))
		}
		t.Run(name, func(t *testing.T) {
			for cut := int64(0); cut <= int64(len(want)); cut++ {
				if cut > 0 && cut < segmentHeaderSize {
					continue
				}
				dir := t.TempDir()
				copyDir(t, src, dir)
				content := append(bytes.Clone(want[:cut]), old[cut:]...)
				path := filepath.Join(dir, segmentName(11))
				if err := os.WriteFile(path, content, 0o644); err != nil {
					t.Fatal(err)
				}
				j, err := Open(dir, opts)
				if err != nil {
					t.Fatalf("cut at %d: Open: %v", cut, err)
				}
				// A record is whole once its data is: its padding is
				// not checked.
				kept := uint64(10)
				for k := 0; k+1 < len(offs) && offs[k]+16+int64(binary.BigEndian.Uint32(want[offs[k]:])) <= cut; k++ {
					kept++
				}
				wantRange(t, replayAll(t, j, 0), 1, kept)
				if j.LastIndex() != kept {
					t.Fatalf("cut at %d: LastIndex %d, want %d", cut, j.LastIndex(), kept)
				}
				_, statErr := os.Stat(path)
				if kept == 10 && !errors.Is(statErr, os.ErrNotExist) {
					t.Fatalf("cut at %d: segment without a new record kept (%v)", cut, statErr)
				}
				appendRange(t, j, kept+1, kept+3)
				if err := j.Close(); err != nil {
					t.Fatal(err)
				}
				j = openT(t, dir, opts)
				wantRange(t, replayAll(t, j, 0), 1, kept+3)
				if err := j.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
