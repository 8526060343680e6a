package journal

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"duplex/disk"
)

// diskRecord is a record as decodeSegment finds it in a segment's bytes.
type diskRecord struct {
	off, frame int64 // where it starts; its bytes, header and padding included
	index      uint64
	data       []byte // without its gaps
	gaps       int    // entries in its gap table (0: a record without gaps)
	crcOK      bool
}

// decodeSegment parses a segment of any version independently of the
// package, as doc.go describes it, and returns its records. It fails the
// test unless the records end where the segment does; it does not fail
// for a checksum (crcOK says), so tests may parse what they damage.
func decodeSegment(t testing.TB, seg []byte) []diskRecord {
	t.Helper()
	if len(seg) < 16 {
		t.Fatalf("segment of %d bytes", len(seg))
	}
	var recs []diskRecord
	for off := headerSizeOf(seg); off < len(seg); {
		r, err := decodeRecord(seg, off)
		if err != "" {
			t.Fatalf("record at %d: %s", off, err)
		}
		recs = append(recs, r)
		off += int(r.frame)
	}
	return recs
}

// decodeRecord parses the record at off of the segment seg, or says why it
// cannot: the bytes end inside it, or its gap table does not fit them.
func decodeRecord(seg []byte, off int) (diskRecord, string) {
	be := binary.BigEndian
	version := be.Uint32(seg[4:8])
	var salt []byte
	if version >= 2 {
		salt = seg[16:24]
	}
	if off+16 > len(seg) {
		return diskRecord{}, "header cut"
	}
	r := diskRecord{off: int64(off), index: be.Uint64(seg[off+8:])}
	length, sum := be.Uint32(seg[off:]), be.Uint32(seg[off+4:])
	covered := append(append([]byte(nil), salt...), seg[off+8:off+16]...)
	var end int
	if version == 3 && length == 0xffffffff {
		if off+32 > len(seg) {
			return r, "header with gaps cut"
		}
		n, count, total := int(be.Uint32(seg[off+16:])), int(be.Uint32(seg[off+20:])), int(be.Uint32(seg[off+24:]))
		at := off + 32 + 8*count
		if count > n || at > len(seg) {
			return r, "gap table cut"
		}
		covered = append(covered, seg[off+16:at]...)
		pos, from := at, 0
		for k := range count {
			e := seg[off+32+8*k:]
			gapAt, gapLen := int(be.Uint32(e)), int(be.Uint32(e[4:]))
			if gapAt < from || gapAt > n || pos+gapAt-from+gapLen > len(seg) {
				return r, fmt.Sprintf("gap %d at %d of %d bytes does not fit", k, gapAt, gapLen)
			}
			r.data = append(r.data, seg[pos:pos+gapAt-from]...)
			pos += gapAt - from + gapLen
			from = gapAt
		}
		end = at + n + total
		if pos+n-from != end || end > len(seg) {
			return r, "data cut"
		}
		r.data = append(r.data, seg[pos:end]...)
		r.gaps = count
	} else {
		end = off + 16 + int(length)
		if end > len(seg) || end < off {
			return r, "data cut"
		}
		r.data = append([]byte(nil), seg[off+16:end]...)
	}
	end += (8 - end%8) % 8
	if end > len(seg) {
		return r, "padding cut"
	}
	r.frame = int64(end - off)
	table := crc32.MakeTable(crc32.Castagnoli)
	r.crcOK = crc32.Update(crc32.Checksum(covered, table), table, r.data) == sum
	return r, ""
}

const (
	goldenFileGaps = "testdata/golden-v3-gaps.hex"
)

// withGrain makes j's writes to its active segment, a file written
// through the page cache, those of a direct write of grain: the layout of
// a record with gaps then depends on where its parts lie, not on the file
// system the test runs on.
func withGrain(t testing.TB, j *Journal, grain int) {
	t.Helper()
	j.mu.Lock()
	defer j.mu.Unlock()
	size := j.segs[len(j.segs)-1].size
	tail := int(size % directAlign)
	j.growBuf(tail)
	if _, err := j.f.ReadAt(j.dbuf[:tail], size-int64(tail)); err != nil {
		t.Fatal(err)
	}
	j.direct, j.tail, j.grain = true, tail, grain
}

// smallGapRecords lets records of more than 1 KiB have gaps, before their
// parts of 4 KiB or more, so that golden bytes stay short.
func smallGapRecords(t testing.TB) {
	oldCopy, oldInPlace := copyThreshold, inPlaceMin
	copyThreshold, inPlaceMin = 1<<10, 4<<10
	t.Cleanup(func() { copyThreshold, inPlaceMin = oldCopy, oldInPlace })
}

// goldenGapParts is the data of the golden record with gaps, as parts at
// fixed places modulo 512: 20 bytes, 4100 at 200, 5000 at 0, 3 bytes.
func goldenGapParts() [][]byte {
	buf := disk.ShortBuffer(16 << 10)
	for k := range buf {
		buf[k] = byte(k*7 + k/256)
	}
	return [][]byte{[]byte("consistency group 2 "), buf[200 : 200+4100], buf[8192 : 8192+5000], []byte("end")}
}

// TestGoldenGaps pins the layout of a record with gaps (version 3): its
// header, gap table, the gaps that put each large part where it lies
// modulo the grain, and the padding; the stored bytes must read back.
func TestGoldenGaps(t *testing.T) {
	fixSalt(t, goldenSalt)
	smallGapRecords(t)
	dir := t.TempDir()
	j := openT(t, dir, Options{Buffered: true})
	if err := j.Append(1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	withGrain(t, j, 512)
	parts := goldenGapParts()
	data := bytes.Join(parts, nil)
	if err := j.AppendParts(2, parts, crc32.Checksum(data, castagnoli)); err != nil {
		t.Fatal(err)
	}
	got := closeSegments(t, j, dir, 1)[0]
	recs := decodeSegment(t, got)
	if len(recs) != 2 || recs[1].gaps != 2 || !recs[1].crcOK || !bytes.Equal(recs[1].data, data) {
		t.Fatalf("records %+v: want record 2 with 2 gaps", recs)
	}
	// Record 2 starts at 48; its data at 48+32+16 = 96. 20 bytes, then a
	// gap of 84 puts the part at 200 at 200; it ends at 4300 (204 modulo
	// 512), and a gap of 308 puts the part at 0 at 4608.
	if want := "00000014" + "00000054" + "00001018" + "00000134"; hex.EncodeToString(got[48+32:48+48]) != want {
		t.Fatalf("gap table %x, want %s", got[48+32:48+48], want)
	}
	dump := "# " + segmentName(1) + ": version 3, salt 4d44675f7e59f985, record 1 \"hello\", record 2 with gaps (4 parts: 20 bytes, 4100 at 200 modulo 512, 5000 at 0, 3)\n" + hex.Dump(got)
	if *update {
		if err := os.WriteFile(goldenFileGaps, []byte(dump), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenFileGaps)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenGaps -update to create it)", err)
	}
	if string(want) != dump {
		t.Fatalf("segment bytes differ from %s", goldenFileGaps)
	}
	// The stored bytes, read back from the device where the file system
	// takes that, and through the page cache.
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, segmentName(1)), parseDump(t, string(want)), 0o644); err != nil {
		t.Fatal(err)
	}
	j = openT(t, dir, Options{})
	defer j.Close()
	got2 := replayAll(t, j, 0)
	if len(got2) != 2 || string(got2[0].data) != "hello" || !bytes.Equal(got2[1].data, data) {
		t.Fatalf("replayed %d records", len(got2))
	}
}

// TestGoldenV2 reads a segment of version 2, which journals written before
// version 3 hold, and appends to it as it was written: a record in a
// version 2 segment has no gaps, however its parts lie and however it is
// written, and the segment after it is of version 3.
func TestGoldenV2(t *testing.T) {
	smallGapRecords(t)
	dir := readGolden(t, goldenFileV2)
	want := parseDump(t, mustRead(t, goldenFileV2))
	j := openT(t, dir, Options{SegmentSize: int64(len(want)) + 30, Buffered: true})
	withGrain(t, j, 512)
	parts := goldenGapParts()
	data := bytes.Join(parts, nil)
	if err := j.AppendParts(3, parts, crc32.Checksum(data, castagnoli)); err != nil {
		t.Fatal(err)
	}
	if err := j.AppendParts(4, parts, crc32.Checksum(data, castagnoli)); err != nil {
		t.Fatal(err)
	}
	segs := closeSegments(t, j, dir, 2)
	if !bytes.Equal(segs[0][:len(want)], want) {
		t.Fatal("appending changed the version 2 records")
	}
	if v := binary.BigEndian.Uint32(segs[0][4:8]); v != 2 {
		t.Fatalf("the version 2 segment is now of version %d", v)
	}
	recs := decodeSegment(t, segs[0])
	if len(recs) != 3 || recs[2].index != 3 || recs[2].gaps != 0 || !recs[2].crcOK || !bytes.Equal(recs[2].data, data) {
		t.Fatalf("version 2 segment: %d records, the last %d with %d gaps", len(recs), recs[len(recs)-1].index, recs[len(recs)-1].gaps)
	}
	if v := binary.BigEndian.Uint32(segs[1][4:8]); v != segmentVersion3 {
		t.Fatalf("the segment after a version 2 one is of version %d", v)
	}
	j = openT(t, dir, Options{})
	defer j.Close()
	got := replayAll(t, j, 0)
	if len(got) != 4 || !bytes.Equal(got[2].data, data) || !bytes.Equal(got[3].data, data) {
		t.Fatalf("replayed %d records", len(got))
	}
}

// TestDirectRecordsWithGaps appends records whose large parts lie anywhere
// in memory to a journal that writes directly: each such part is written
// from where it lies but for its grain's ends (the bytes copied come to
// the headers, the small parts and under two grains a large part), and
// every record reads back as appended, after a reopen too.
func TestDirectRecordsWithGaps(t *testing.T) {
	testDirectRecordsWithGaps(t, 0)
}

// TestDirectRecordsWithGapsOfACoarserGrain is TestDirectRecordsWithGaps on
// a device whose direct I/O takes pieces aligned to 4096 bytes only (a
// disk of 4 KiB sectors), the coarsest grain the journal writes directly
// with: gaps of up to 4095 bytes, every piece of the write a multiple of
// 4096 long at an address that is a multiple of 4096, which the file
// system here, of a finer grain, takes too.
func TestDirectRecordsWithGapsOfACoarserGrain(t *testing.T) {
	testDirectRecordsWithGaps(t, maxGap)
}

// testDirectRecordsWithGaps runs TestDirectRecordsWithGaps with the grain
// of the file system, or with grain if it is not 0, in one segment.
func testDirectRecordsWithGaps(t *testing.T, grain int) {
	dir := t.TempDir()
	if !directSupported(t, dir) {
		t.Skipf("%s takes no direct writes", dir)
	}
	opts := Options{SegmentSize: 4 << 20}
	if grain != 0 {
		// A new segment takes its file system's grain again.
		opts.SegmentSize = 64 << 20
	}
	j := openT(t, dir, opts)
	if j.grain == 0 {
		j.Append(1, []byte("first"))
	} else {
		t.Fatal("a journal without segments has a grain")
	}
	if j.grain == 0 {
		t.Fatal("no grain after the first segment")
	}
	if grain != 0 {
		if j.grain > grain {
			t.Skipf("the file system's grain is %d, coarser than %d", j.grain, grain)
		}
		j.mu.Lock()
		j.grain = grain
		j.mu.Unlock()
	}
	backing := make([]byte, 8<<20)
	for k := range backing {
		backing[k] = byte(k * 13)
	}
	var want [][]byte
	for i := uint64(2); i <= 40; i++ {
		// A group's table and headers, then updates at odd places of a
		// frame: 1 MiB, 4 KiB, a small one, 70000 bytes.
		at := int(i*4099) % (1 << 20)
		parts := [][]byte{backing[at : at+100], backing[at+100 : at+100+1<<20], backing[at+(1<<20)+300 : at+(1<<20)+300+4096],
			backing[at+3<<20 : at+3<<20+77], backing[at+4<<20+int(i) : at+4<<20+int(i)+70000]}
		data := bytes.Join(parts, nil)
		before := j.copied
		if err := j.AppendParts(i, parts, crc32.Checksum(data, castagnoli)); err != nil {
			t.Fatal(err)
		}
		// The 100 and 77 bytes, the 4 KiB update (below inPlaceMin), the
		// headers, and for each of the two large parts its gap and its
		// ends: under a grain each.
		if copied := j.copied - before; copied > int64(100+77+4096+64+2*3*j.grain) {
			t.Fatalf("record %d: %d bytes copied", i, copied)
		}
		want = append(want, data)
		if i%5 == 0 {
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	gapped := 0
	for _, p := range segFiles(t, dir) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range decodeSegment(t, b) {
			if !r.crcOK {
				t.Fatalf("%s: record %d fails its checksum", p, r.index)
			}
			if r.gaps > 0 {
				gapped++
			}
		}
	}
	if gapped != len(want) {
		t.Fatalf("%d records with gaps, want %d", gapped, len(want))
	}
	j = openT(t, dir, Options{})
	defer j.Close()
	got := replayAll(t, j, 1)
	if len(got) != len(want) {
		t.Fatalf("replayed %d records, want %d", len(got), len(want))
	}
	for k := range got {
		if !bytes.Equal(got[k].data, want[k]) {
			t.Fatalf("record %d differs", got[k].index)
		}
	}
}

// TestGapTableWhoseLengthsOverflow appends to a segment a record with gaps
// whose table's lengths, each below 4096, add up to more than 4 GiB, so
// that their sum in 32 bits wraps to the gap bytes its header states, and
// what follows in the file is as long as that. The table does not describe
// the bytes after it: the record ends the log as a malformed table does,
// the record before it kept, whatever its CRC.
func TestGapTableWhoseLengthsOverflow(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{Buffered: true})
	if err := j.Append(1, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	path := segFiles(t, dir)[0]
	seg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const count = 1<<20 + 1024 // 4095 bytes each: 4 GiB and 3 MiB
	length := uint32(count + 1)
	var total uint32
	for range count {
		total += maxGap - 1
	}
	be := binary.BigEndian
	var rec []byte
	rec = be.AppendUint32(rec, gappedMark)
	rec = be.AppendUint32(rec, 0)
	rec = be.AppendUint64(rec, 2)
	rec = be.AppendUint32(rec, length)
	rec = be.AppendUint32(rec, count)
	rec = be.AppendUint32(rec, total)
	rec = be.AppendUint32(rec, 0)
	for k := range uint32(count) {
		rec = be.AppendUint32(rec, k)
		rec = be.AppendUint32(rec, maxGap-1)
	}
	data := bytes.Repeat([]byte{7}, int(length))
	sum := recordSum(crc32.Update(0, castagnoli, seg[16:24]), 2, rec[16:], crc32.Checksum(data, castagnoli), len(data))
	be.PutUint32(rec[4:], sum)
	rec = append(rec, data...)
	rec = append(rec, make([]byte, int(total)+padding(int(length)+int(total)))...)
	if err := os.WriteFile(path, append(seg, rec...), 0o644); err != nil {
		t.Fatal(err)
	}
	j, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer j.Close()
	got := replayAll(t, j, 0)
	if len(got) != 1 || string(got[0].data) != "kept" {
		t.Fatalf("replayed %d records, want the one before the malformed table", len(got))
	}
}
