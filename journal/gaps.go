package journal

import (
	"encoding/binary"
	"unsafe"
)

// gap is an entry of a record's gap table: n zero bytes on the disk before
// the data byte at, which belong to no data (see doc.go, "Records with
// gaps").
type gap struct {
	at, n uint32
}

// gapZeros supplies the bytes of gaps.
var gapZeros [maxGap]byte

// inPlace reports whether a direct write of grain takes p from where it
// lies (see write), and so whether a record's layout gives p a gap.
func inPlace(p []byte, grain int) bool {
	return grain > 0 && len(p) >= max(inPlaceMin, 2*grain)
}

// addrMod is where p lies in memory modulo grain.
func addrMod(p []byte, grain int) int {
	return int(uintptr(unsafe.Pointer(unsafe.SliceData(p))) % uintptr(grain))
}

// planGaps returns the gap table of a record whose data is data joined,
// to be written at offset at of seg's file, or nil for a record without
// gaps: one entry before every part a direct write takes in place, long
// enough that the part lies on the disk where it lies in memory modulo
// the grain, so the write takes its whole grains from there rather than
// copying them. Only segments of version 3 hold such records, and only a
// direct write gains from them.
func (j *Journal) planGaps(seg segment, data [][]byte, at int64) []gap {
	if !seg.gaps || !j.direct || j.grain == 0 || j.grain > maxGap {
		return nil
	}
	count := 0
	total := 0
	for _, p := range data {
		total += len(p)
		if inPlace(p, j.grain) {
			count++
		}
	}
	if count == 0 || total <= copyThreshold {
		return nil
	}
	g := j.grain
	pos := int((at + gappedHeaderSize + int64(count)*gapEntrySize) % int64(g))
	gaps := make([]gap, 0, count)
	var off uint32
	for _, p := range data {
		if inPlace(p, g) {
			n := (addrMod(p, g) - pos + g) % g
			gaps = append(gaps, gap{at: off, n: uint32(n)})
			pos = (pos + n) % g
		}
		pos = (pos + len(p)) % g
		off += uint32(len(p))
	}
	return gaps
}

// appendGapped lays out a record with gaps: its header and gap table into
// j.buf (after the room for a segment header there), and its parts, in
// file order, appended to parts: a placeholder for j.buf's piece, which
// the caller fills, then the data's parts with the gaps' zeros before
// those gaps names, then the padding.
func (j *Journal) appendGapped(parts [][]byte, seed uint32, index uint64, data [][]byte, n int, sum uint32, gaps []gap) [][]byte {
	var total uint32
	for _, g := range gaps {
		total += g.n
	}
	be := binary.BigEndian
	h := len(j.buf)
	j.buf = be.AppendUint32(j.buf, gappedMark)
	j.buf = be.AppendUint32(j.buf, 0) // the checksum, below
	j.buf = be.AppendUint64(j.buf, index)
	j.buf = be.AppendUint32(j.buf, uint32(n))
	j.buf = be.AppendUint32(j.buf, uint32(len(gaps)))
	j.buf = be.AppendUint32(j.buf, total)
	j.buf = be.AppendUint32(j.buf, 0)
	for _, g := range gaps {
		j.buf = be.AppendUint32(j.buf, g.at)
		j.buf = be.AppendUint32(j.buf, g.n)
	}
	be.PutUint32(j.buf[h+4:], recordSum(seed, index, j.buf[h+16:], sum, n))
	parts = append(parts, nil)
	k := 0
	for _, p := range data {
		if inPlace(p, j.grain) {
			if g := gaps[k]; g.n > 0 {
				parts = append(parts, gapZeros[:g.n])
			}
			k++
		}
		parts = append(parts, p)
	}
	return append(parts, zeros[:padding(n+int(total))])
}
