package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"duplex/consistency"
	"duplex/journal"
	"duplex/recordset"
)

// TestJournaledAgreesWithOpen checks the campaign's outside reader of the
// secondary's journal against the journal package's own recovery, for a last
// record cut at every point where a stopped or killed Append can leave it:
// the reader must never name a group that Open drops as a torn tail, or the
// campaign counts as lost a group that was never synced, hence never
// acknowledged. An Append of a record above 64 KiB writes its header, its
// data and its padding in three writes, so a stop between the last two
// leaves the data whole and the padding missing.
func TestJournaledAgreesWithOpen(t *testing.T) {
	const session = "faults"
	// Resync copies make groups far larger than the journal's single-write
	// threshold; 1 MiB of data plus the encoding is not a multiple of 8, so
	// the record has padding.
	group := func(n uint64, size int) []byte {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(n + uint64(i))
		}
		g := &consistency.Group{Number: n, Time: int64(n) * 1000, Through: map[string]uint64{"ss1": n},
			Updates: []recordset.Update{{Kind: recordset.KindWrite, Volume: "v001", Offset: 0, Length: uint64(size), Timestamp: int64(n) * 1000, Data: data}}}
		b, err := consistency.EncodeGroup(nil, session, g)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	records := [][]byte{group(1, 4096), group(2, 1<<20+3), group(3, 1<<20+5)}
	if len(records[2])%8 == 0 {
		t.Fatalf("the last record (%d bytes) needs padding for this test", len(records[2]))
	}
	for _, buffered := range []bool{true, false} {
		// Written directly (where the file system takes that), a large
		// record has gaps (the journal package's "Records with gaps").
		t.Run(map[bool]string{true: "buffered", false: "direct"}[buffered], func(t *testing.T) {
			testJournaledAgreesWithOpen(t, records, buffered)
		})
	}
}

func testJournaledAgreesWithOpen(t *testing.T, records [][]byte, buffered bool) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	opts := journal.Options{MaxRecord: 64 << 20, Buffered: buffered}
	seg := filepath.Join(src, "0000000000000001.seg")
	// The last record starts where the two before it end: the same
	// records from the same memory get the same gaps.
	var start int
	for _, upTo := range []int{2, 3} {
		os.RemoveAll(src)
		j, err := journal.Open(src, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range records[:upTo] {
			if err := j.Append(uint64(i+1), r); err != nil {
				t.Fatal(err)
			}
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		if upTo == 2 {
			st, err := os.Stat(seg)
			if err != nil {
				t.Fatal(err)
			}
			start = int(st.Size())
		}
	}
	whole, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	n := len(records[2])
	frame := len(whole) - start
	body := 16 + n
	if binary.BigEndian.Uint32(whole[start:]) == 0xffffffff {
		count, total := binary.BigEndian.Uint32(whole[start+20:]), binary.BigEndian.Uint32(whole[start+24:])
		body = 32 + 8*int(count) + n + int(total)
	} else if !buffered {
		t.Logf("the last record has no gaps: %s takes no direct writes", base)
	}
	pad := frame - body
	cuts := map[string]int{
		"before the record":           start,
		"inside the header":           start + 8,
		"header only":                 start + 16,
		"inside the data":             start + body/2,
		"data whole, padding missing": start + body,
		"data whole, padding partial": start + body + pad/2,
		"record whole":                len(whole),
	}
	for name, cut := range cuts {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(base, filepath.Base(t.Name()))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(seg)), whole[:cut], 0o644); err != nil {
				t.Fatal(err)
			}
			// Read from outside first, as the campaign does, before Open
			// truncates anything.
			got, gotTime, tail, err := journaled(dir)
			if err != nil {
				t.Fatalf("journaled: %v", err)
			}
			j, err := journal.Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			want := j.LastIndex()
			if got != want {
				t.Fatalf("the campaign's reader says group %d is intact on disk, journal.Open recovers through %d", got, want)
			}
			if torn := cut != start && cut != len(whole); torn != (tail != "") {
				t.Errorf("torn tail reported as %q", tail)
			}
			if want > 0 && gotTime != int64(want)*1000 {
				t.Errorf("time of group %d = %d, want %d", got, gotTime, int64(want)*1000)
			}
		})
	}
}

// TestJournaledDirectPadding is the secondary's journal as a kill leaves it
// between Appends where the journal writes directly: the active segment
// runs on past its last record with zeros to a 4096-byte boundary (see
// the journal package's "Direct writes"). That is no Append cut short:
// the reader must name the last record and report no torn tail, or every
// kill's note claims an interrupted Append.
func TestJournaledDirectPadding(t *testing.T) {
	g := &consistency.Group{Number: 1, Time: 1000, Through: map[string]uint64{"ss1": 1},
		Updates: []recordset.Update{{Kind: recordset.KindWrite, Volume: "v001", Offset: 0, Length: 5, Timestamp: 1000, Data: []byte("hello")}}}
	rec, err := consistency.EncodeGroup(nil, "faults", g)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	j, err := journal.Open(src, journal.Options{MaxRecord: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(1, rec); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(filepath.Join(src, "0000000000000001.seg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(whole)%4096 == 0 {
		t.Fatalf("the segment is %d bytes, on a block boundary: no padding to test", len(whole))
	}
	for name, pad := range map[string]int{
		"zeros to the block's end": 4096 - len(whole)%4096,
		"fewer than a header":      7,
		"a block of zeros more":    4096 - len(whole)%4096 + 4096,
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "j")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			b := append(bytes.Clone(whole), make([]byte, pad)...)
			if err := os.WriteFile(filepath.Join(dir, "0000000000000001.seg"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			got, _, tail, err := journaled(dir)
			if err != nil || got != 1 {
				t.Fatalf("journaled: group %d, %v; want 1", got, err)
			}
			// Only a direct write's own zeros are padding: they end at a
			// block boundary and fill less than a block.
			if padding := len(b)%4096 == 0 && pad < 4096; padding != (tail == "") {
				t.Fatalf("%d zero bytes after the record: torn tail %q", pad, tail)
			}
		})
	}
}
