package journal

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
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
	be := binary.BigEndian
	if len(seg) < 16 {
		t.Fatalf("segment of %d bytes", len(seg))
	}
	version := be.Uint32(seg[4:8])
	off, salt := 16, []byte(nil)
	if version >= 2 {
		off, salt = 24, seg[16:24]
	}
	table := crc32.MakeTable(crc32.Castagnoli)
	var recs []diskRecord
	for off < len(seg) {
		if off+16 > len(seg) {
			t.Fatalf("record header at %d cut by the end of the segment (%d bytes)", off, len(seg))
		}
		r := diskRecord{off: int64(off), index: be.Uint64(seg[off+8:])}
		length, sum := be.Uint32(seg[off:]), be.Uint32(seg[off+4:])
		covered := append(append([]byte(nil), salt...), seg[off+8:off+16]...)
		var end int
		if version == 3 && length == 0xffffffff {
			if off+32 > len(seg) {
				t.Fatalf("record %d: header with gaps cut", r.index)
			}
			n, count, total := int(be.Uint32(seg[off+16:])), int(be.Uint32(seg[off+20:])), int(be.Uint32(seg[off+24:]))
			at := off + 32 + 8*count
			if at > len(seg) {
				t.Fatalf("record %d: gap table cut", r.index)
			}
			covered = append(covered, seg[off+16:at]...)
			pos, from := at, 0
			for k := range count {
				e := seg[off+32+8*k:]
				gapAt, gapLen := int(be.Uint32(e)), int(be.Uint32(e[4:]))
				if pos+gapAt-from+gapLen > len(seg) || gapAt < from {
					t.Fatalf("record %d: gap %d at %d of %d bytes does not fit", r.index, k, gapAt, gapLen)
				}
				r.data = append(r.data, seg[pos:pos+gapAt-from]...)
				pos += gapAt - from + gapLen
				from = gapAt
			}
			if pos+n-from > len(seg) {
				t.Fatalf("record %d: data cut", r.index)
			}
			r.data = append(r.data, seg[pos:pos+n-from]...)
			end = at + n + total
			r.gaps = count
		} else {
			end = off + 16 + int(length)
			if end > len(seg) {
				t.Fatalf("record %d at %d: data cut", r.index, off)
			}
			r.data = append([]byte(nil), seg[off+16:end]...)
		}
		end += (8 - end%8) % 8
		if end > len(seg) {
			t.Fatalf("record %d at %d: padding cut", r.index, off)
		}
		r.frame = int64(end - off)
		r.crcOK = crc32.Update(crc32.Checksum(covered, table), table, r.data) == sum
		recs = append(recs, r)
		off = end
	}
	return recs
}
