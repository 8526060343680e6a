package journal

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// directSupported reports whether a file in dir takes the journal's direct
// writes, asked independently of any Journal.
func directSupported(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	return setDirect(f) != 0
}

// tmpfsDir is a new directory on a tmpfs (/dev/shm), which takes no direct
// writes of the kind the journal makes, or "" if there is none.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	var st syscall.Statfs_t
	const tmpfsMagic = 0x01021994
	if err := syscall.Statfs("/dev/shm", &st); err != nil || st.Type != tmpfsMagic {
		return ""
	}
	dir, err := os.MkdirTemp("/dev/shm", "journal-test")
	if err != nil {
		return ""
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// bigPayload is record i's data for the direct-write tests: lengths that
// end anywhere in a block, cross blocks, and (one of them) exceed
// maxDirectChunk so that a record takes several direct writes.
func bigPayload(i uint64) []byte {
	n := []int{0, 5, 4096, 4080, 4100, 12345, 1 << 16, maxDirectChunk + 3000, 8, 511}[i%10]
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(i*131 + uint64(k)*7)
	}
	return b
}

// writeBig appends records from..to of bigPayload, every other one in
// pieces of up to 1000 bytes as AppendParts takes a group's frames.
func writeBig(t *testing.T, j *Journal, from, to uint64) {
	t.Helper()
	for i := from; i <= to; i++ {
		data := bigPayload(i)
		var err error
		if i%2 == 0 {
			var parts [][]byte
			for p := data; len(p) > 0; p = p[min(len(p), 1000):] {
				parts = append(parts, p[:min(len(p), 1000)])
			}
			err = j.AppendParts(i, parts, crc32.Checksum(data, castagnoli))
		} else {
			err = j.Append(i, data)
		}
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if i%3 == 0 {
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestDirectWritesTheSameBytes writes one sequence of records directly
// (where the file system takes direct writes), through the page cache, and
// on a tmpfs, where the journal must fall back to the page cache by
// itself, closing and reopening half way so that a reopened journal
// rewrites a partial block it read back: every segment file must come out
// byte for byte the same, as the format has no notion of how it was
// written, but for the gaps of the records a direct write took parts of
// in place: the direct run's segments hold the same records.
func TestDirectWritesTheSameBytes(t *testing.T) {
	fixSalt(t, goldenSalt)
	type run struct {
		name     string
		dir      string
		buffered bool
		direct   bool // want j.direct
	}
	tmp := t.TempDir()
	runs := []run{
		{name: "buffered", dir: filepath.Join(tmp, "buffered"), buffered: true},
		{name: "direct", dir: filepath.Join(tmp, "direct"), direct: directSupported(t, tmp)},
	}
	if !runs[1].direct {
		t.Logf("%s takes no direct writes: both runs are buffered", tmp)
	}
	if shm := tmpfsDir(t); shm != "" {
		runs = append(runs, run{name: "tmpfs", dir: shm})
	} else {
		t.Logf("no tmpfs at /dev/shm: the fallback is not tested here")
	}
	const n = 24
	opts := Options{SegmentSize: 256 << 10, MaxRecord: 16 << 20}
	for _, r := range runs {
		o := opts
		o.Buffered = r.buffered
		j := openT(t, r.dir, o)
		writeBig(t, j, 1, n/2)
		if j.direct != r.direct {
			t.Fatalf("%s: direct %v, want %v", r.name, j.direct, r.direct)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		j = openT(t, r.dir, o)
		if j.direct != r.direct {
			t.Fatalf("%s: reopened: direct %v, want %v", r.name, j.direct, r.direct)
		}
		writeBig(t, j, n/2+1, n)
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		j = openT(t, r.dir, o)
		i := uint64(1)
		err := j.Replay(0, func(index uint64, data []byte) error {
			if index != i || !bytes.Equal(data, bigPayload(i)) {
				t.Fatalf("%s: replayed record %d (%d bytes), want %d", r.name, index, len(data), i)
			}
			i++
			return nil
		})
		if err != nil || i != n+1 {
			t.Fatalf("%s: replay: %v, %d records", r.name, err, i-1)
		}
		j.Close()
	}
	want := segFiles(t, runs[0].dir)
	if len(want) < 3 {
		t.Fatalf("%d segments, want several", len(want))
	}
	records := func(paths []string) (recs []diskRecord, gapped int) {
		for _, p := range paths {
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
				recs = append(recs, r)
			}
		}
		return recs, gapped
	}
	wantRecs, _ := records(want)
	for _, r := range runs[1:] {
		got := segFiles(t, r.dir)
		if r.direct {
			recs, gapped := records(got)
			if gapped == 0 {
				t.Fatalf("%s: no record with gaps", r.name)
			}
			if len(recs) != len(wantRecs) {
				t.Fatalf("%s: %d records, buffered %d", r.name, len(recs), len(wantRecs))
			}
			for k := range recs {
				if recs[k].index != wantRecs[k].index || !bytes.Equal(recs[k].data, wantRecs[k].data) {
					t.Fatalf("%s: record %d differs from the buffered run's", r.name, recs[k].index)
				}
			}
			continue
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d segments, buffered %d", r.name, len(got), len(want))
		}
		for k := range got {
			a, _ := os.ReadFile(want[k])
			b, _ := os.ReadFile(got[k])
			if filepath.Base(got[k]) != filepath.Base(want[k]) || !bytes.Equal(a, b) {
				t.Fatalf("%s: segment %s (%d bytes) differs from buffered %s (%d bytes)",
					r.name, filepath.Base(got[k]), len(b), filepath.Base(want[k]), len(a))
			}
		}
	}
}

// TestDirectTornTailRewrite is the crash window that direct writes open:
// each write starts at the block boundary before the end of the last
// record and rewrites that record's last bytes, and the file runs on past
// the last record with zeros to the block's end. A crash can leave any
// sector of such a write old or new. The records synced before it must
// all survive, and the record being written must be either whole or gone:
// one copied whole into the journal's buffer, and one with gaps whose
// large parts the write took from where they lay.
func TestDirectTornTailRewrite(t *testing.T) {
	for _, gaps := range []bool{false, true} {
		t.Run(fmt.Sprintf("gaps=%v", gaps), func(t *testing.T) { testDirectTornTailRewrite(t, gaps) })
	}
}

func testDirectTornTailRewrite(t *testing.T, gaps bool) {
	src := t.TempDir()
	if !directSupported(t, src) {
		t.Skipf("%s takes no direct writes", src)
	}
	opts := Options{SegmentSize: 1 << 30}
	j := openT(t, src, opts)
	const synced = 5
	for i := uint64(1); i <= synced; i++ {
		if err := j.Append(i, make([]byte, 1000+int(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	path := segFiles(t, src)[0]
	before, err := os.ReadFile(path) // the synced state, zeros past the last record
	if err != nil {
		t.Fatal(err)
	}
	end := j.segs[0].size
	if end%directAlign == 0 || int64(len(before)) != (end+directAlign-1)&^(directAlign-1) {
		t.Fatalf("records end at %d in a file of %d bytes: want a direct write's zeros to the block's end", end, len(before))
	}
	next := make([]byte, 3*directAlign+100)
	for k := range next {
		next[k] = byte(k*7 + 1)
	}
	parts := [][]byte{next}
	if gaps {
		// A group's header, then updates lying anywhere in their frame.
		frame := make([]byte, 110<<10)
		for k := range frame {
			frame[k] = byte(k*7 + 1)
		}
		parts = [][]byte{frame[:300], frame[301 : 301+70000], frame[70400 : 70400+30000], frame[100001 : 100001+2000]}
		next = bytes.Join(parts, nil)
	}
	if err := j.AppendParts(synced+1, parts, crc32.Checksum(next, castagnoli)); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path) // the next record written, not synced
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	recs := decodeSegment(t, after[:j.segs[0].size])
	if r := recs[len(recs)-1]; r.index != synced+1 || (r.gaps > 0) != gaps {
		t.Fatalf("record %d has %d gaps", r.index, r.gaps)
	}

	const sector = 512
	from := end &^ (directAlign - 1)
	for cut := from; cut <= int64(len(after)); cut += sector {
		for _, newFirst := range []bool{true, false} {
			// The device wrote the sectors before cut and not those after,
			// or the other way round.
			torn := bytes.Clone(after)
			old := func(lo, hi int64) {
				for k := lo; k < hi; k++ {
					if k < int64(len(before)) {
						torn[k] = before[k]
					} else {
						torn[k] = 0
					}
				}
			}
			if newFirst {
				old(cut, int64(len(torn)))
			} else {
				old(from, cut)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(path)), torn, 0o644); err != nil {
				t.Fatal(err)
			}
			j, err := Open(dir, opts)
			if err != nil {
				t.Fatalf("cut at %d (new first %v): Open: %v", cut, newFirst, err)
			}
			whole := bytes.Equal(torn, after)
			wantLast := uint64(synced)
			if whole {
				wantLast++
			}
			var got uint64
			err = j.Replay(0, func(index uint64, data []byte) error {
				if index == synced+1 && !bytes.Equal(data, next) {
					t.Fatalf("cut at %d (new first %v): record %d replayed with other bytes", cut, newFirst, index)
				}
				got = index
				return nil
			})
			if err != nil || got != wantLast || j.LastIndex() != wantLast {
				t.Fatalf("cut at %d (new first %v): replayed through %d (%v), LastIndex %d, want %d",
					cut, newFirst, got, err, j.LastIndex(), wantLast)
			}
			// And the journal goes on from there.
			if err := j.Append(wantLast+1, []byte("more")); err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j = openT(t, dir, opts)
			if j.LastIndex() != wantLast+1 {
				t.Fatalf("cut at %d: reopened at %d, want %d", cut, j.LastIndex(), wantLast+1)
			}
			j.Close()
		}
	}
}

// TestDeviceReaderReadsAnyRange reads files of sizes around a block and a
// chunk through a descriptor opened with O_DIRECT, in pieces of odd
// offsets and lengths as the record reader asks for them, and gets their
// bytes: every read it issues is aligned, and the one at the end of the
// file, short, is not taken for an error.
func TestDeviceReaderReadsAnyRange(t *testing.T) {
	dir := t.TempDir()
	if !directSupported(t, dir) {
		t.Skipf("%s takes no direct I/O", dir)
	}
	for _, size := range []int{16, 4095, 4096, 4097, deviceChunk - 1, deviceChunk, deviceChunk + 4097} {
		want := make([]byte, size)
		for i := range want {
			want[i] = byte(i*7 + i/4096)
		}
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_RDWR|oDirect, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !keepDirect(f) {
			t.Fatal("keepDirect: false on a file system that takes direct I/O")
		}
		r := newDeviceReader(f, int64(size))
		got := make([]byte, 0, size)
		p := make([]byte, 3001)
		for off := int64(0); ; {
			n, err := r.ReadAt(p[:min(len(p), 1+int(off)%len(p))], off)
			got = append(got, p[:n]...)
			off += int64(n)
			if err == io.EOF && off == int64(size) {
				break
			}
			if err != nil {
				t.Fatalf("size %d: ReadAt at %d: %v", size, off, err)
			}
		}
		f.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("size %d: read back different bytes", size)
		}
	}
}
