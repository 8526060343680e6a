package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"duplex/consistency"
	"duplex/recordset"
)

// journaled reads the secondary's journal directory from outside, while the
// secondary runs, and returns the last group whose record is complete and
// intact on disk, with its consistency time. That is the reference for "no
// journaled group is lost": a group appended to the journal is in the page
// cache the moment write returns, so kill -9 of the process cannot lose it,
// and the restarted secondary must come back at that group or later.
//
// It follows the segment format of the journal package's documentation; a
// record being written while it reads fails its CRC and ends the scan, as a
// torn tail ends recovery.
func journaled(dir string) (group uint64, t int64, err error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		return 0, 0, err
	}
	sort.Strings(names) // %016x names sort by first index
	var last []byte
	for _, name := range names {
		idx, data, err := lastRecord(name)
		if errors.Is(err, os.ErrNotExist) {
			continue // released while we looked
		}
		if err != nil {
			return 0, 0, err
		}
		if idx > group {
			group, last = idx, data
		}
	}
	if last == nil {
		return 0, 0, nil
	}
	g, _, err := consistency.DecodeGroup(last, recordset.DefaultLimits)
	if err != nil {
		return 0, 0, fmt.Errorf("journal record %d: %w", group, err)
	}
	return group, g.Time, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// lastRecord returns the index and data of the last intact record of one
// segment file.
func lastRecord(path string) (uint64, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	if len(b) < 16 || string(b[:4]) != "DXJL" {
		return 0, nil, nil // being created
	}
	if !strings.HasSuffix(path, ".seg") {
		return 0, nil, nil
	}
	be := binary.BigEndian
	var idx uint64
	var data []byte
	for off := 16; off+16 <= len(b); {
		n, sum, i := int(be.Uint32(b[off:])), be.Uint32(b[off+4:]), be.Uint64(b[off+8:])
		end := off + 16 + n
		if n == 0 && sum == 0 || end > len(b) {
			break
		}
		if crc32.Checksum(b[off+8:end], castagnoli) != sum {
			break
		}
		idx, data = i, b[off+16:end]
		off = end + (8-(16+n)%8)%8
	}
	return idx, data, nil
}
