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
// intact on disk, with its consistency time. That is the reference for "no
// journaled group is lost": a group appended to the journal is in the page
// cache the moment write returns, so kill -9 of the process cannot lose it,
// and the restarted secondary must come back at that group or later.
//
// It follows the segment format of the journal package's documentation and
// must end where the journal's recovery ends: a record is complete only with
// its padding, since an Append of a large record writes header, data and
// padding separately, and a process stopped between the last two leaves a
// record that was never synced, hence never acknowledged, which Open drops
// as a torn tail. tail says why the scan of the last segment stopped short of
// the end of its file ("" if it did not): a kill in the middle of an Append.
func journaled(dir string) (group uint64, t int64, tail string, err error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		return 0, 0, "", err
	}
	sort.Strings(names) // %016x names sort by first index
	var last []byte
	for _, name := range names {
		sc, err := scanSegmentFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue // released while we looked
		}
		if err != nil {
			return 0, 0, "", err
		}
		if sc.last > group {
			group, last = sc.last, sc.data
		}
		tail = sc.tail
	}
	if last == nil {
		return 0, 0, tail, nil
	}
	g, _, err := consistency.DecodeGroup(last, groupLimits)
	if err != nil {
		return 0, 0, tail, fmt.Errorf("journal record %d: %w", group, err)
	}
	return group, g.Time, tail, nil
}

// groupLimits are the secondary's limits for a journaled group: a resync
// group can be far larger than any record set.
var groupLimits = recordset.Limits{MaxHeader: 1 << 30, MaxPayload: secondary.MaxGroupBytes, MaxRecords: 1 << 26}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentScan is what one segment file holds.
type segmentScan struct {
	last uint64 // index of its last intact record, 0 if none
	data []byte // that record's data
	tail string // why the scan stopped before the end of the file, "" if it did not
}

// scanSegmentFile walks the records of one segment file as the journal's
// recovery does: length, CRC-32C over index and data, then padding to 8
// bytes, all of which must be in the file.
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
	off := 16
	for off < len(b) {
		if off+16 > len(b) {
			sc.tail = fmt.Sprintf("record header cut at %d of 16 bytes", len(b)-off)
			break
		}
		n, sum, i := int(be.Uint32(b[off:])), be.Uint32(b[off+4:]), be.Uint64(b[off+8:])
		if n == 0 && sum == 0 && i == 0 {
			sc.tail = "zeroed record header"
			break
		}
		data := off + 16 + n
		end := data + (8-n%8)%8
		switch {
		case data > len(b):
			sc.tail = fmt.Sprintf("record %d cut in its data, %d of %d bytes written", i, len(b)-off-16, n)
		case end > len(b):
			sc.tail = fmt.Sprintf("record %d whole but its padding cut, %d of %d bytes written", i, len(b)-data, end-data)
		case crc32.Checksum(b[off+8:data], castagnoli) != sum:
			sc.tail = fmt.Sprintf("record %d fails its checksum", i)
		}
		if sc.tail != "" {
			break
		}
		sc.last, sc.data = i, b[off+16:data]
		off = end
	}
	return sc, nil
}
