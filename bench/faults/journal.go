package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"

	"duplex/consistency"
	"duplex/recordset"
	"duplex/secondary"
)

// journaled reads the secondary's journal directory from outside, while the
// secondary is frozen, and returns the last group whose record is complete and
// intact on disk, with its consistency time. A group appended to the journal
// is in the page cache the moment write returns, so kill -9 of the process
// cannot lose it. tail says why the scan of the last segment stopped short of
// the end of its file ("" if it did not, or only a direct write's zeros
// followed): a kill in the middle of an Append.
func journaled(dir string) (group uint64, t int64, tail string, err error) {
	gs, tail, err := journaledGroups(dir, 0, true)
	if err != nil || len(gs) == 0 {
		return 0, 0, tail, err
	}
	g := gs[len(gs)-1]
	return g.Number, g.Time, tail, nil
}

// journaledGroups returns the groups after group after whose records are
// complete and intact on disk, in order (with last, only the last of them).
//
// It follows the segment format of the journal package's documentation and
// must end where the journal's recovery ends: a record is complete only with
// its padding, since an Append of a large record writes header, data and
// padding separately, and a process stopped between the last two leaves a
// record that was never synced, hence never acknowledged, which Open drops
// as a torn tail.
func journaledGroups(dir string, after uint64, last bool) ([]*consistency.Group, string, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		return nil, "", err
	}
	sort.Strings(names) // %016x names sort by first index
	var (
		recs []record
		tail string
	)
	for _, name := range names {
		sc, err := scanSegmentFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue // released while we looked
		}
		if err != nil {
			return nil, "", err
		}
		for _, r := range sc.records {
			if r.index > after {
				recs = append(recs, r)
			}
		}
		tail = sc.tail
	}
	if last && len(recs) > 1 {
		recs = recs[len(recs)-1:]
	}
	var gs []*consistency.Group
	for _, r := range recs {
		g, _, err := consistency.DecodeGroup(r.data, groupLimits)
		if err != nil {
			return nil, tail, fmt.Errorf("journal record %d: %w", r.index, err)
		}
		gs = append(gs, g)
	}
	return gs, tail, nil
}

// groupLimits are the secondary's limits for a journaled group: a resync
// group can be far larger than any record set.
var groupLimits = recordset.Limits{MaxHeader: 1 << 30, MaxPayload: secondary.MaxGroupBytes, MaxRecords: 1 << 26}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentScan is what one segment file holds.
type segmentScan struct {
	records []record // its intact records, in order
	tail    string   // why the scan stopped before the end of the file, "" if it did not
}

type record struct {
	index uint64
	data  []byte
}

// directAlign is the block a journal that writes directly ends each write
// at, with zeros after the last record (the journal package's "Direct
// writes").
const directAlign = 4096

// directPadding reports whether rest, the bytes of a segment file of size
// bytes after its last intact record, are a direct write's zeros: fewer
// than a block, ending at a block boundary. A kill between Appends leaves
// them; they are not an Append cut short.
func directPadding(rest []byte, size int) bool {
	if size%directAlign != 0 || len(rest) >= directAlign {
		return false
	}
	for _, c := range rest {
		if c != 0 {
			return false
		}
	}
	return true
}

// scanSegmentFile walks the records of one segment file as the journal's
// recovery does: length, CRC-32C over the segment's salt (version 2),
// index and data, then padding to 8 bytes, all of which must be in the file.
func scanSegmentFile(path string) (segmentScan, error) {
	var sc segmentScan
	b, err := os.ReadFile(path)
	if err != nil {
		return sc, err
	}
	if len(b) < 16 || string(b[:4]) != "DXJL" {
		sc.tail = fmt.Sprintf("segment %s of %d bytes without a header", filepath.Base(path), len(b))
		return sc, nil // being created
	}
	be := binary.BigEndian
	// Version 2 adds a salt to the header, and each record's CRC covers it
	// before the index and data; version 1 has neither. Version 3 adds
	// records with gaps.
	off, salt := 16, []byte(nil)
	v := be.Uint32(b[4:])
	switch v {
	case 1:
	case 2, 3:
		if len(b) < 24 {
			sc.tail = fmt.Sprintf("segment %s of %d bytes, its header cut", filepath.Base(path), len(b))
			return sc, nil // being created
		}
		off, salt = 24, b[16:24]
	default:
		return sc, fmt.Errorf("segment %s: journal format version %d", path, v)
	}
	for off < len(b) {
		if directPadding(b[off:], len(b)) {
			break
		}
		if off+16 > len(b) {
			sc.tail = fmt.Sprintf("record header cut at %d of 16 bytes", len(b)-off)
			break
		}
		n, sum, i := int(be.Uint32(b[off:])), be.Uint32(b[off+4:]), be.Uint64(b[off+8:])
		if n == 0 && sum == 0 && i == 0 {
			sc.tail = "zeroed record header"
			break
		}
		if v == 3 && uint32(n) == 0xffffffff {
			r, end, tail := gappedRecord(b, off, salt)
			if sc.tail = tail; tail != "" {
				break
			}
			sc.records = append(sc.records, r)
			off = end
			continue
		}
		data := off + 16 + n
		end := data + (8-n%8)%8
		switch {
		case data > len(b):
			sc.tail = fmt.Sprintf("record %d cut in its data, %d of %d bytes written", i, len(b)-off-16, n)
		case end > len(b):
			sc.tail = fmt.Sprintf("record %d whole but its padding cut, %d of %d bytes written", i, len(b)-data, end-data)
		case crc32.Update(crc32.Checksum(salt, castagnoli), castagnoli, b[off+8:data]) != sum:
			sc.tail = fmt.Sprintf("record %d fails its checksum", i)
		}
		if sc.tail != "" {
			break
		}
		sc.records = append(sc.records, record{i, b[off+16 : data]})
		off = end
	}
	return sc, nil
}

// gappedRecord reads the record with gaps (version 3) at off of the
// segment b: a 32-byte header (0xffffffff, CRC, index, data length, gap
// count, gap bytes, zero), the gap table (data offset and length of each
// gap), the data with the gaps' zeros between, padding to 8 bytes. Its CRC
// covers the salt, the index, the header from its offset 16 and the table,
// then the data without the gaps. It returns the record and where the
// next one starts, or why the scan stops there.
func gappedRecord(b []byte, off int, salt []byte) (record, int, string) {
	be := binary.BigEndian
	i := be.Uint64(b[off+8:])
	if off+32 > len(b) {
		return record{}, 0, fmt.Sprintf("record %d with gaps cut in its header", i)
	}
	n, count, total := int(be.Uint32(b[off+16:])), int(be.Uint32(b[off+20:])), int(be.Uint32(b[off+24:]))
	table := off + 32
	at := table + 8*count
	end := at + n + total
	end += (8 - end%8) % 8
	if count > n || end > len(b) {
		return record{}, 0, fmt.Sprintf("record %d with gaps cut, %d of %d bytes written", i, len(b)-off, end-off)
	}
	data := make([]byte, 0, n)
	pos, from := at, 0
	for k := range count {
		gapAt, gapLen := int(be.Uint32(b[table+8*k:])), int(be.Uint32(b[table+8*k+4:]))
		if gapAt < from || gapAt > n || pos+gapAt-from+gapLen > at+n+total {
			return record{}, 0, fmt.Sprintf("record %d has a malformed gap table", i)
		}
		data = append(data, b[pos:pos+gapAt-from]...)
		pos += gapAt - from + gapLen
		from = gapAt
	}
	if pos+n-from != at+n+total {
		return record{}, 0, fmt.Sprintf("record %d has a malformed gap table", i)
	}
	data = append(data, b[pos:pos+n-from]...)
	covered := append(append(append([]byte(nil), salt...), b[off+8:off+16]...), b[off+16:at]...)
	if crc32.Update(crc32.Checksum(covered, castagnoli), castagnoli, data) != be.Uint32(b[off+4:]) {
		return record{}, 0, fmt.Sprintf("record %d fails its checksum", i)
	}
	return record{i, data}, end, ""
}
