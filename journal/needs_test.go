package journal

import (
	"bytes"
	"hash/crc32"
	"os"
	"testing"

	"duplex/disk"
)

// TestNeedsBoundsWhatTheJournalTakes: Needs is what the secondary keeps
// free for its journal (the reserve it reports to the primary net of, and
// what Open checks for), so it must bound the file system space the
// journal takes while the caller releases every segment but the active one
// and the one before it. Records of the largest size are written directly in
// parts of 64 KiB whose every gap is as long as the grain allows, and each
// segment is rolled one byte short of its size, so it overruns by a whole
// record: the worst case, which counting a record as its data size alone
// under-counts.
func TestNeedsBoundsWhatTheJournalTakes(t *testing.T) {
	dir := t.TempDir()
	if !directSupported(t, dir) {
		t.Skipf("%s takes no direct writes: records have no gaps", dir)
	}
	const parts = 16
	const part = 64 << 10
	const largest = parts * part

	// record builds a record of largest bytes whose gaps, written at the
	// end of the active segment, are each grain-1 bytes: every part lies
	// one byte before where the previous one leaves the file, modulo the
	// grain.
	grain := 0 // the file system's, which a new segment takes
	record := func(j *Journal, i uint64, segSize int64) [][]byte {
		g := grain
		j.mu.Lock()
		at := int64(segmentHeaderSize)
		if k := len(j.segs); k > 0 && j.segs[k-1].size < segSize {
			at = j.segs[k-1].size
		}
		j.mu.Unlock()
		pos := int((at + gappedHeaderSize + parts*gapEntrySize) % int64(g))
		backing := disk.DirectBuffer(parts * (part + g))
		out := make([][]byte, parts)
		for k := range out {
			r := ((pos-1-k)%g + g) % g
			p := backing[k*(part+g)+r : k*(part+g)+r+part]
			for b := range p {
				p[b] = byte(int(i)*7 + k + b)
			}
			out[k] = p
		}
		return out
	}
	appendRecord := func(j *Journal, i uint64, segSize int64) {
		data := record(j, i, segSize)
		if err := j.AppendParts(i, data, crc32.Checksum(bytes.Join(data, nil), castagnoli)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if err := j.Sync(); err != nil {
			t.Fatal(err)
		}
	}

	// The size of one record on the disk, to roll each segment one byte
	// short of its size.
	probe := openT(t, t.TempDir(), Options{})
	if probe.Append(1, []byte("x")) != nil || probe.grain == 0 {
		t.Skip("the journal writes no segment directly here")
	}
	grain = probe.grain
	appendRecord(probe, 2, 1<<30)
	probe.mu.Lock()
	frame := probe.segs[0].size - segmentHeaderSize - (recordHeaderSize + 8)
	probe.mu.Unlock()
	probe.Close()
	segSize := segmentHeaderSize + 2*frame + 1

	j := openT(t, dir, Options{SegmentSize: segSize})
	var peak int64
	for i := uint64(1); i <= 12; i++ {
		// Released as the caller may leave it, every record applied but
		// those of the active segment: the next may roll to a new one,
		// the active one then the one before it.
		j.mu.Lock()
		var through uint64
		if k := len(j.segs); k > 1 {
			through = j.segs[k-2].last
		}
		j.mu.Unlock()
		if through > 0 {
			if err := j.Release(through); err != nil {
				t.Fatal(err)
			}
		}
		appendRecord(j, i, segSize)
		var taken int64
		for _, p := range segFiles(t, dir) {
			// The file system allocates whole blocks.
			taken += (fileSize(t, p) + directAlign - 1) &^ (directAlign - 1)
		}
		peak = max(peak, taken)
	}
	// Closed, the active segment is cut to its records.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range segFiles(t, dir) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range decodeSegment(t, b) {
			if r.frame > RecordSpace(int64(len(r.data))) {
				t.Errorf("record %d of %d bytes takes %d bytes in its segment, RecordSpace says at most %d",
					r.index, len(r.data), r.frame, RecordSpace(int64(len(r.data))))
			}
		}
	}
	need := Needs(segSize, largest)
	t.Logf("grain %d: a record of %d bytes takes %d; segments of %d; at most %d bytes taken, Needs %d",
		grain, largest, frame, segSize, peak, need)
	if peak > need {
		t.Fatalf("the journal took %d bytes of its file system, more than Needs(%d, %d) = %d: the reserve kept for it under-counts by %d",
			peak, segSize, largest, need, peak-need)
	}
}

// TestRecordSpaceOfSmallRecords: a record that can have no gaps (of at most
// 64 KiB) is charged its header and padding, nothing for gaps.
func TestRecordSpaceOfSmallRecords(t *testing.T) {
	for _, n := range []int64{0, 1, 8, 4096, 64 << 10} {
		if got, want := RecordSpace(n), int64(recordHeaderSize)+n+int64(padding(int(n))); got != want {
			t.Errorf("RecordSpace(%d) = %d, want %d", n, got, want)
		}
	}
}
