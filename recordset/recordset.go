package recordset

import (
	"duplex/crc32c"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"slices"
)

// Sizes and values of the wire format (see the package documentation). Part
// of the wire format: never change.
const (
	Magic   = "DXRS"
	Version = 1
	// VersionMarkers is the version of a set that holds at least one
	// KindMarker update; a set without markers is encoded as Version, so
	// that receivers that do not know markers still read it.
	VersionMarkers = 2

	// PrefixSize is how many leading bytes FrameSize needs to find the
	// length of a whole record set.
	PrefixSize = 16

	fixedHeaderSize = 74 // magic through subsystem id length
	volEntrySize    = 2  // name length; the name follows
	recordInfoSize  = 40
	crcSize         = 4
	minHeaderSize   = fixedHeaderSize + 1 + 1 + crcSize // shortest ids, no records
	maxNameLen      = 255
	maxVolumes      = math.MaxUint16
)

// Offsets of the fixed header fields. Part of the wire format: never change.
const (
	offMagic      = 0
	offVersion    = 4
	offFlags      = 6
	offHeaderLen  = 8
	offPayloadLen = 12
	offSeq        = 16
	offGroup      = 24
	offReadTime   = 32
	offHorizon    = 40
	offLowest     = 48
	offHighest    = 56
	offRecords    = 64
	offVolumes    = 68
	offSessionLen = 70
	offSubsysLen  = 72
)

var (
	// ErrCorrupt means a checksum did not match: the bytes were damaged
	// after they were encoded.
	ErrCorrupt = errors.New("checksum mismatch")
	// ErrMalformed means the bytes are not a record set this package could
	// have encoded, although their checksums (if reached) matched.
	ErrMalformed = errors.New("malformed record set")
	// ErrTooLarge means the record set exceeds the decoder's Limits.
	ErrTooLarge = errors.New("record set too large")
	// ErrVersion means the record set has a format version this package
	// does not know.
	ErrVersion = errors.New("unsupported record set version")
	// ErrInvalid means a RecordSet given to Encode cannot be encoded.
	ErrInvalid = errors.New("invalid record set")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var be = binary.BigEndian

// Limits bound what Decode and FrameSize accept, so that a damaged or hostile
// length field cannot make a receiver allocate or wait for more than it is
// prepared to. A zero or negative field means the DefaultLimits value.
type Limits struct {
	MaxHeader  int // header length H, including the header CRC
	MaxPayload int // payload length P
	MaxRecords int // record count N
}

// DefaultLimits is generous enough for any set the data mover forms with its
// default settings; a receiver with less memory should pass smaller limits.
var DefaultLimits = Limits{
	MaxHeader:  1 << 20,
	MaxPayload: 64 << 20,
	MaxRecords: 1 << 20,
}

// Effective returns l with every zero or negative field replaced by its
// DefaultLimits value: the limits a decoder given l applies.
func (l Limits) Effective() Limits {
	return Limits{MaxHeader: int(l.maxHeader()), MaxPayload: int(l.maxPayload()), MaxRecords: int(l.maxRecords())}
}

func (l Limits) maxHeader() uint64  { return limitOr(l.MaxHeader, DefaultLimits.MaxHeader) }
func (l Limits) maxPayload() uint64 { return limitOr(l.MaxPayload, DefaultLimits.MaxPayload) }
func (l Limits) maxRecords() uint64 { return limitOr(l.MaxRecords, DefaultLimits.MaxRecords) }

func limitOr(v, def int) uint64 {
	if v <= 0 {
		v = def
	}
	if v <= 0 { // DefaultLimits was changed to something meaningless
		return 0
	}
	return uint64(v)
}

// Lowest returns the timestamp of the earliest update, or 0 if there are
// none. Updates are in timestamp order, so that is the first one.
func (rs *RecordSet) Lowest() int64 {
	if len(rs.Updates) == 0 {
		return 0
	}
	return rs.Updates[0].Timestamp
}

// Highest returns the timestamp of the latest update, or 0 if there are none.
func (rs *RecordSet) Highest() int64 {
	if len(rs.Updates) == 0 {
		return 0
	}
	return rs.Updates[len(rs.Updates)-1].Timestamp
}

// DataBytes returns the total length of the updates' data, which is the
// payload length of the encoding.
func (rs *RecordSet) DataBytes() int {
	n := 0
	for i := range rs.Updates {
		n += len(rs.Updates[i].Data)
	}
	return n
}

// Validate reports whether Encode would accept rs, with the same error.
func (rs *RecordSet) Validate() error {
	vt := &volTable{}
	_, _, err := rs.layout(vt)
	return err
}

// volTable maps volume names to their index in the volume table. Sets
// usually touch few volumes and touch them in runs, so it remembers the last
// hit and only builds a map when a linear scan would get slow.
type volTable struct {
	names []string
	index map[string]int
	last  int
}

const volTableLinearMax = 8

func (t *volTable) lookup(name string) (int, bool) {
	if t.last < len(t.names) && t.names[t.last] == name {
		return t.last, true
	}
	if t.index != nil {
		i, ok := t.index[name]
		if ok {
			t.last = i
		}
		return i, ok
	}
	for i, n := range t.names {
		if n == name {
			t.last = i
			return i, true
		}
	}
	return 0, false
}

func (t *volTable) add(name string) int {
	i := len(t.names)
	if t.names == nil {
		t.names = make([]string, 0, volTableLinearMax) // one allocation for the common case
	}
	t.names = append(t.names, name)
	if t.index != nil {
		t.index[name] = i
	} else if len(t.names) > volTableLinearMax {
		t.index = make(map[string]int, 2*len(t.names))
		for j, n := range t.names {
			t.index[n] = j
		}
	}
	t.last = i
	return i
}

// layout validates rs, fills vt with its volume table and returns the header
// and payload lengths of its encoding. Lengths are computed even when rs is
// invalid, so that EncodedSize can use them.
func (rs *RecordSet) layout(vt *volTable) (hdr, payload uint64, err error) {
	// Keep going after an error: the lengths are still wanted.
	invalid := func(format string, args ...any) {
		if err == nil {
			err = fmt.Errorf("recordset: "+format+": %w", append(args, ErrInvalid)...)
		}
	}

	if rs.Seq == 0 {
		invalid("sequence number 0")
	}
	if n := len(rs.Session); n == 0 || n > maxNameLen {
		invalid("session id length %d not in 1..%d", n, maxNameLen)
	}
	if n := len(rs.Subsystem); n == 0 || n > maxNameLen {
		invalid("subsystem id length %d not in 1..%d", n, maxNameLen)
	}
	hdr = fixedHeaderSize + uint64(len(rs.Session)) + uint64(len(rs.Subsystem)) +
		uint64(len(rs.Updates))*recordInfoSize + crcSize

	var prevTS int64
	for i := range rs.Updates {
		u := &rs.Updates[i]
		if _, ok := vt.lookup(u.Volume); !ok {
			if n := len(u.Volume); n == 0 || n > maxNameLen {
				invalid("update %d: volume name length %d not in 1..%d", i, n, maxNameLen)
			}
			vt.add(u.Volume)
			hdr += volEntrySize + uint64(len(u.Volume))
		}
		switch {
		case u.Kind.HasData():
			if uint64(len(u.Data)) != u.Length {
				invalid("update %d: %v with %d bytes of data but length %d", i, u.Kind, len(u.Data), u.Length)
			}
			if u.Kind == KindMarker {
				if merr := checkMarker(u.Offset, u.Data); merr != nil {
					invalid("update %d: %v", i, merr)
				}
			}
		case u.Kind == KindZeroes || u.Kind == KindTrim:
			if len(u.Data) != 0 {
				invalid("update %d: %v carries %d bytes of data", i, u.Kind, len(u.Data))
			}
		default:
			invalid("update %d: unknown kind %d", i, u.Kind)
		}
		payload += uint64(len(u.Data))
		if _, carry := bits.Add64(u.Offset, u.Length, 0); carry != 0 {
			invalid("update %d: offset %d + length %d overflows", i, u.Offset, u.Length)
		}
		if i > 0 && u.Timestamp <= prevTS {
			invalid("update %d: timestamp %d not after previous %d", i, u.Timestamp, prevTS)
		}
		if u.Timestamp > rs.Horizon {
			invalid("update %d: timestamp %d after horizon %d", i, u.Timestamp, rs.Horizon)
		}
		prevTS = u.Timestamp
	}
	if len(vt.names) > maxVolumes {
		invalid("%d volumes, at most %d fit", len(vt.names), maxVolumes)
	}
	if uint64(len(rs.Updates)) > math.MaxUint32 {
		invalid("%d updates, at most %d fit", len(rs.Updates), uint64(math.MaxUint32))
	}
	if hdr > math.MaxUint32 {
		invalid("header of %d bytes, at most %d fit", hdr, uint64(math.MaxUint32))
	}
	if payload > math.MaxUint32 {
		invalid("payload of %d bytes, at most %d fit", payload, uint64(math.MaxUint32))
	}
	return hdr, payload, err
}

// version is the format version of rs's encoding.
func (rs *RecordSet) version() uint16 {
	for i := range rs.Updates {
		if rs.Updates[i].Kind == KindMarker {
			return VersionMarkers
		}
	}
	return Version
}

// EncodedSize returns the exact length of the encoding of rs, for presizing
// buffers and accounting for memory before encoding. It is meaningless if
// Encode would reject rs.
func EncodedSize(rs *RecordSet) int {
	vt := &volTable{}
	hdr, payload, _ := rs.layout(vt)
	return int(hdr + payload + crcSize)
}

// Encode appends the encoding of rs to dst and returns the extended slice. If
// rs is invalid (see Validate) it returns dst unchanged and an error wrapping
// ErrInvalid. The lowest and highest timestamps are taken from the updates,
// so callers cannot get them wrong.
func Encode(dst []byte, rs *RecordSet) ([]byte, error) {
	b, _, err := encode(dst, nil, rs, false)
	return b, err
}

// SplitMin is the smallest update whose data EncodeSplit leaves out.
const SplitMin = 64 << 10

// Insert is data EncodeSplit left out of an encoding: it belongs at At, an
// offset in the buffer returned.
type Insert struct {
	At   int
	Data []byte
}

// EncodeSplit is Encode without copying the data of updates of SplitMin
// bytes or more, nor of those of partMin bytes or more whose checksum is
// known (Checksum): it appends the rest of the encoding to dst, and to ins
// the data it left out, each with the offset in dst where it belongs, in
// order. dst with each insert's data put in at its offset (a vectored write,
// writev) is what Encode appends. The checksum still reads every byte once,
// but for the checksums it combines: a small update checksummed at capture
// is neither read nor copied here, by then long out of the cache, only by
// the kernel's copy into the socket.
func EncodeSplit(dst []byte, ins []Insert, rs *RecordSet) ([]byte, []Insert, error) {
	return encode(dst, ins, rs, true)
}

func encode(dst []byte, ins []Insert, rs *RecordSet, split bool) ([]byte, []Insert, error) {
	vt := &volTable{}
	hdr, payload, err := rs.layout(vt)
	if err != nil {
		return dst, ins, err
	}
	grow := hdr + payload + crcSize
	if split {
		for i := range rs.Updates {
			if u := &rs.Updates[i]; leftOut(u) {
				grow -= uint64(len(u.Data))
			}
		}
	}
	b := slices.Grow(dst, int(grow))
	b = rs.appendHeader(b, vt, hdr, payload)

	var sum payloadSum
	for i := range rs.Updates {
		u := &rs.Updates[i]
		if split && leftOut(u) {
			ins = append(ins, Insert{At: len(b), Data: u.Data})
			if u.summed {
				sum.combine(u.sum, len(u.Data))
			} else {
				sum.update(u.Data)
			}
			continue
		}
		b = append(b, u.Data...)
		if u.summed {
			sum.combine(u.sum, len(u.Data))
		} else {
			sum.update(b[len(b)-len(u.Data):])
		}
	}
	b = be.AppendUint32(b, sum.crc)
	return b, ins, nil
}

// leftOut says whether EncodeSplit leaves u's data out of the buffer.
func leftOut(u *Update) bool {
	return len(u.Data) >= SplitMin || u.summed && len(u.Data) >= partMin
}

// Checksum records the CRC-32C of u's data, for encoders to combine rather
// than read the bytes again (EncodeSplit, EncodeParts): a capture that
// checksums a write's bytes while they are in the cache, just received,
// spares the encoder a pass over them an interval later. u.Data must not
// change afterwards.
func (u *Update) Checksum() { u.sum, u.summed = crc32c.Checksum(u.Data), true }

// appendHeader appends rs's header, hdr bytes with its checksum, to b.
func (rs *RecordSet) appendHeader(b []byte, vt *volTable, hdr, payload uint64) []byte {
	start := len(b)
	b = append(b, Magic...)
	b = be.AppendUint16(b, rs.version())
	b = be.AppendUint16(b, 0) // flags
	b = be.AppendUint32(b, uint32(hdr))
	b = be.AppendUint32(b, uint32(payload))
	b = be.AppendUint64(b, rs.Seq)
	b = be.AppendUint64(b, rs.Group)
	b = be.AppendUint64(b, uint64(rs.ReadTime))
	b = be.AppendUint64(b, uint64(rs.Horizon))
	b = be.AppendUint64(b, uint64(rs.Lowest()))
	b = be.AppendUint64(b, uint64(rs.Highest()))
	b = be.AppendUint32(b, uint32(len(rs.Updates)))
	b = be.AppendUint16(b, uint16(len(vt.names)))
	b = be.AppendUint16(b, uint16(len(rs.Session)))
	b = be.AppendUint16(b, uint16(len(rs.Subsystem)))
	b = append(b, rs.Session...)
	b = append(b, rs.Subsystem...)
	for _, n := range vt.names {
		b = be.AppendUint16(b, uint16(len(n)))
		b = append(b, n...)
	}
	for i := range rs.Updates {
		u := &rs.Updates[i]
		idx, _ := vt.lookup(u.Volume)
		b = be.AppendUint32(b, uint32(idx))
		b = append(b, byte(u.Kind), 0, 0, 0)
		b = be.AppendUint64(b, u.Offset)
		b = be.AppendUint64(b, u.Length)
		b = be.AppendUint64(b, uint64(u.Timestamp))
		b = be.AppendUint64(b, u.Seq)
	}
	return be.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// EncodeParts is EncodeSum without copying the data of the updates Decode
// kept a checksum of (those of partMin bytes or more): it appends the rest
// of the encoding (the header, the other updates' data, the payload
// checksum) to dst, and returns the encoding as parts, in order, appended
// to parts: pieces of the returned buffer and those updates' own Data. So
// a journal can write a group's encoding straight from the frames its
// updates arrived in (journal.AppendParts), without copying or reading
// their bytes. The parts alias the returned buffer and the updates' data.
func EncodeParts(dst []byte, rs *RecordSet, parts [][]byte) ([]byte, [][]byte, uint32, error) {
	vt := &volTable{}
	hdr, payload, err := rs.layout(vt)
	if err != nil {
		return dst, parts, 0, err
	}
	inPlace := func(u *Update) bool { return u.summed && len(u.Data) >= partMin }
	copied, placed := int(hdr+crcSize), 0
	for i := range rs.Updates {
		if u := &rs.Updates[i]; !inPlace(u) {
			copied += len(u.Data)
		} else {
			placed++
		}
	}
	// At most a part of copied bytes before each update in place, and the
	// last: sized once rather than grown by appends, a copy of every part
	// at each growth, for a group of small writes thousands of parts.
	parts = slices.Grow(parts, 2*placed+1)
	// Room for all that is copied, so that the parts cut from b stay b's.
	b := slices.Grow(dst, copied)
	start := len(b)
	b = rs.appendHeader(b, vt, hdr, payload)
	head := crc32c.Checksum(b[start:])
	mark := start // where the copied bytes not yet in a part begin
	var sum payloadSum
	for i := range rs.Updates {
		u := &rs.Updates[i]
		if inPlace(u) {
			if len(b) > mark {
				parts = append(parts, b[mark:len(b):len(b)])
				mark = len(b)
			}
			parts = append(parts, u.Data)
			sum.combine(u.sum, len(u.Data))
			continue
		}
		b = append(b, u.Data...)
		if u.summed {
			sum.combine(u.sum, len(u.Data))
		} else {
			sum.update(b[len(b)-len(u.Data):])
		}
	}
	b = be.AppendUint32(b, sum.crc)
	parts = append(parts, b[mark:len(b):len(b)])
	all := crc32c.Combine(head, sum.crc, int64(payload))
	return b, parts, crc32c.Update(all, b[len(b)-crcSize:]), nil
}

// EncodeSum is Encode that also returns the CRC-32C of the bytes it
// appended. It reads again only what Decode did not keep a checksum of
// (small updates and the header), so a journal can frame the encoding with
// a checksum of its own (journal.AppendSum) at little cost.
func EncodeSum(dst []byte, rs *RecordSet) ([]byte, uint32, error) {
	start := len(dst)
	b, err := Encode(dst, rs)
	if err != nil {
		return b, 0, err
	}
	hdr := int(be.Uint32(b[start+offHeaderLen:]))
	payload := int(be.Uint32(b[start+offPayloadLen:]))
	sum := crc32c.Combine(crc32c.Checksum(b[start:start+hdr]), be.Uint32(b[len(b)-crcSize:]), int64(payload))
	return b, crc32c.Update(sum, b[len(b)-crcSize:]), nil
}

// partMin is the smallest update whose checksum Decode keeps, and whose
// data EncodeParts leaves in place: below it, copying and checksumming the
// bytes costs less than a piece of their own in a vectored write and
// combining checksums.
const partMin = 1 << 10

// payloadSum is the CRC-32C of a payload built piece by piece, each piece
// either read or, when its checksum is known, combined.
type payloadSum struct{ crc uint32 }

func (p *payloadSum) update(b []byte) { p.crc = crc32c.Update(p.crc, b) }

func (p *payloadSum) combine(sum uint32, n int) {
	p.crc = crc32c.Combine(p.crc, sum, int64(n))
}

// PayloadAt is where the payload of the record set whose first bytes are
// prefix starts in its encoding, if prefix holds the set's prefix and it
// is a plain set (not a compressed one, whose payload is not where it will
// be read). The length is not checked: a receiver places the set's buffer
// by it, and Decode checks it.
func PayloadAt(prefix []byte) (int, bool) {
	if len(prefix) < PrefixSize || string(prefix[offMagic:offMagic+4]) != Magic {
		return 0, false
	}
	return int(be.Uint32(prefix[offHeaderLen:])), true
}

// FrameSize returns the total length of the record set whose first bytes are
// prefix, which must hold at least PrefixSize bytes. It lets a reader of a
// stream learn how much to read, and refuse a set that exceeds lim, before
// reading or allocating more. The lengths it returns are not yet protected by
// a checksum; Decode checks them.
func FrameSize(prefix []byte, lim Limits) (int, error) {
	if len(prefix) < PrefixSize {
		return 0, fmt.Errorf("recordset: %d bytes, need %d to find the length: %w", len(prefix), PrefixSize, ErrMalformed)
	}
	if string(prefix[offMagic:offMagic+4]) != Magic {
		return 0, fmt.Errorf("recordset: bad magic %q: %w", prefix[offMagic:offMagic+4], ErrMalformed)
	}
	if v := be.Uint16(prefix[offVersion:]); v != Version && v != VersionMarkers {
		return 0, fmt.Errorf("recordset: version %d, want %d or %d: %w", v, Version, VersionMarkers, ErrVersion)
	}
	if f := be.Uint16(prefix[offFlags:]); f != 0 {
		return 0, fmt.Errorf("recordset: unknown flags %#04x: %w", f, ErrMalformed)
	}
	hdr := uint64(be.Uint32(prefix[offHeaderLen:]))
	payload := uint64(be.Uint32(prefix[offPayloadLen:]))
	// Limits come before consistency so that a reader that has only the
	// prefix gets the same answer as Decode gets for the whole set.
	if hdr > lim.maxHeader() {
		return 0, fmt.Errorf("recordset: header of %d bytes exceeds limit %d: %w", hdr, lim.maxHeader(), ErrTooLarge)
	}
	if payload > lim.maxPayload() {
		return 0, fmt.Errorf("recordset: payload of %d bytes exceeds limit %d: %w", payload, lim.maxPayload(), ErrTooLarge)
	}
	if hdr < minHeaderSize {
		return 0, fmt.Errorf("recordset: header length %d, at least %d: %w", hdr, minHeaderSize, ErrMalformed)
	}
	total := hdr + payload + crcSize
	if total > math.MaxInt {
		return 0, fmt.Errorf("recordset: %d bytes do not fit in memory: %w", total, ErrTooLarge)
	}
	return int(total), nil
}

// Header is the fixed part of a record-set header.
type Header struct {
	Session    string
	Subsystem  string
	Seq        uint64
	Group      uint64
	ReadTime   int64
	Horizon    int64
	Lowest     int64
	Highest    int64
	Records    int // record count N
	Volumes    int // volume-table count V
	HeaderLen  int // H, including the header CRC
	PayloadLen int // P, excluding the payload CRC
}

// Size returns the length of the whole encoded record set.
func (h Header) Size() int { return h.HeaderLen + h.PayloadLen + crcSize }

// PeekHeader returns the fixed fields of the record set that b starts with,
// after checking the header CRC but without looking at the volume table,
// records or payload; b needs to hold only the H header bytes. It is meant
// for cheap decisions such as dropping a duplicate set, not for trusting the
// set: only Decode checks all of it.
func PeekHeader(b []byte) (Header, error) {
	// Peeking allocates nothing but the ids, so the widest limits will do;
	// the caller's own limits apply when it decodes.
	wide := Limits{MaxHeader: math.MaxInt, MaxPayload: math.MaxInt}
	if _, err := FrameSize(b, wide); err != nil {
		return Header{}, err
	}
	hdr := be.Uint32(b[offHeaderLen:])
	if uint64(len(b)) < uint64(hdr) {
		return Header{}, fmt.Errorf("recordset: %d bytes, header needs %d: %w", len(b), hdr, ErrMalformed)
	}
	return parseFixed(b[:hdr], math.MaxUint32)
}

// parseFixed checks the header CRC of hb, which is exactly the H header bytes
// of a set that passed FrameSize, and returns its fixed fields. It checks
// what it can without walking the variable part.
func parseFixed(hb []byte, maxRecords uint64) (Header, error) {
	hdr := len(hb)
	want := be.Uint32(hb[hdr-crcSize:])
	if got := crc32.Checksum(hb[:hdr-crcSize], castagnoli); got != want {
		return Header{}, fmt.Errorf("recordset: header crc %#08x, want %#08x: %w", got, want, ErrCorrupt)
	}
	h := Header{
		Seq:        be.Uint64(hb[offSeq:]),
		Group:      be.Uint64(hb[offGroup:]),
		ReadTime:   int64(be.Uint64(hb[offReadTime:])),
		Horizon:    int64(be.Uint64(hb[offHorizon:])),
		Lowest:     int64(be.Uint64(hb[offLowest:])),
		Highest:    int64(be.Uint64(hb[offHighest:])),
		Volumes:    int(be.Uint16(hb[offVolumes:])),
		HeaderLen:  hdr,
		PayloadLen: int(be.Uint32(hb[offPayloadLen:])),
	}
	records := uint64(be.Uint32(hb[offRecords:]))
	sl := uint64(be.Uint16(hb[offSessionLen:]))
	ul := uint64(be.Uint16(hb[offSubsysLen:]))
	// Behind the CRC, so that a damaged count reads as damage, not as a
	// set this receiver is too small for.
	if records > maxRecords {
		return Header{}, fmt.Errorf("recordset: %d records exceed limit %d: %w", records, maxRecords, ErrTooLarge)
	}
	if h.Seq == 0 {
		return Header{}, fmt.Errorf("recordset: sequence number 0: %w", ErrMalformed)
	}
	if sl == 0 || sl > maxNameLen {
		return Header{}, fmt.Errorf("recordset: session id length %d not in 1..%d: %w", sl, maxNameLen, ErrMalformed)
	}
	if ul == 0 || ul > maxNameLen {
		return Header{}, fmt.Errorf("recordset: subsystem id length %d not in 1..%d: %w", ul, maxNameLen, ErrMalformed)
	}
	// Every table entry takes at least 3 bytes and every record 40, so the
	// counts can be checked against H before anything is sized by them.
	need := fixedHeaderSize + sl + ul + uint64(h.Volumes)*(volEntrySize+1) + records*recordInfoSize + crcSize
	if need > uint64(hdr) {
		return Header{}, fmt.Errorf("recordset: %d records and %d volumes need at least %d header bytes, have %d: %w",
			records, h.Volumes, need, hdr, ErrMalformed)
	}
	if records == 0 && (h.Lowest != 0 || h.Highest != 0 || h.Volumes != 0 || h.PayloadLen != 0) {
		return Header{}, fmt.Errorf("recordset: no records but lowest %d, highest %d, %d volumes, %d payload bytes: %w",
			h.Lowest, h.Highest, h.Volumes, h.PayloadLen, ErrMalformed)
	}
	if records > 0 && (h.Lowest > h.Highest || h.Highest > h.Horizon) {
		return Header{}, fmt.Errorf("recordset: lowest %d, highest %d, horizon %d out of order: %w",
			h.Lowest, h.Highest, h.Horizon, ErrMalformed)
	}
	h.Records = int(records) // fits: bounded by hdr above
	h.Session = string(hb[fixedHeaderSize : fixedHeaderSize+sl])
	h.Subsystem = string(hb[fixedHeaderSize+sl : fixedHeaderSize+sl+ul])
	return h, nil
}

// Decode decodes b, which must be exactly one encoded record set, checking
// everything the package documentation says a decoder rejects. It never
// allocates more than lim allows: memory in proportion to N, V and the id
// and volume name lengths, all bounded by lim.MaxHeader and lim.MaxRecords.
//
// The Data of the decoded updates aliases b, so the caller must not modify b
// while the record set is in use; each Data has its capacity limited to its
// length, so appending to it cannot clobber its neighbours. Updates with the
// same volume share one Volume string.
func Decode(b []byte, lim Limits) (*RecordSet, error) { return DecodeSummed(b, lim, nil) }

// DecodeSummed is Decode of b lying in a buffer whose chunks' checksums
// sums holds (crc32c.Sums): the large updates' data is checksummed from
// them, not read again. A nil sums reads it.
func DecodeSummed(b []byte, lim Limits, sums *crc32c.Sums) (*RecordSet, error) {
	total, err := FrameSize(b, lim)
	if err != nil {
		return nil, err
	}
	if len(b) != total {
		return nil, fmt.Errorf("recordset: %d bytes, header and payload lengths say %d: %w", len(b), total, ErrMalformed)
	}
	hdr := int(be.Uint32(b[offHeaderLen:]))
	h, err := parseFixed(b[:hdr], lim.maxRecords())
	if err != nil {
		return nil, err
	}
	pb := b[hdr : total-crcSize]
	want := be.Uint32(b[total-crcSize:])

	rs := &RecordSet{
		Session:   h.Session,
		Subsystem: h.Subsystem,
		Seq:       h.Seq,
		Group:     h.Group,
		ReadTime:  h.ReadTime,
		Horizon:   h.Horizon,
	}
	p := fixedHeaderSize + len(h.Session) + len(h.Subsystem)
	end := hdr - crcSize

	vols := make([]string, h.Volumes)
	for i := range vols {
		if end-p < volEntrySize {
			return nil, fmt.Errorf("recordset: volume %d: header ends: %w", i, ErrMalformed)
		}
		n := int(be.Uint16(b[p:]))
		p += volEntrySize
		if n == 0 || n > maxNameLen {
			return nil, fmt.Errorf("recordset: volume %d: name length %d not in 1..%d: %w", i, n, maxNameLen, ErrMalformed)
		}
		if end-p < n {
			return nil, fmt.Errorf("recordset: volume %d: header ends: %w", i, ErrMalformed)
		}
		vols[i] = string(b[p : p+n])
		p += n
	}
	if err := checkDistinct(vols); err != nil {
		return nil, err
	}
	if end-p != h.Records*recordInfoSize {
		return nil, fmt.Errorf("recordset: %d bytes left for %d record infos of %d bytes: %w",
			end-p, h.Records, recordInfoSize, ErrMalformed)
	}

	if h.Records > 0 {
		rs.Updates = make([]Update, h.Records)
	}
	var (
		used    int    // table entries used so far; first-use order means the next new one is vols[used]
		dataOff uint64 // into pb
		prevTS  int64
		markers int
		version = be.Uint16(b[offVersion:])
	)
	for i := range rs.Updates {
		r := b[p : p+recordInfoSize]
		p += recordInfoSize
		u := &rs.Updates[i]

		idx := be.Uint32(r[0:])
		switch {
		case idx < uint32(used):
		case idx == uint32(used) && used < len(vols):
			used++
		default:
			return nil, fmt.Errorf("recordset: record %d: volume index %d, %d of %d used so far: %w",
				i, idx, used, len(vols), ErrMalformed)
		}
		u.Volume = vols[idx]
		u.Kind = Kind(r[4])
		if r[5]|r[6]|r[7] != 0 {
			return nil, fmt.Errorf("recordset: record %d: reserved bytes % x: %w", i, r[5:8], ErrMalformed)
		}
		u.Offset = be.Uint64(r[8:])
		u.Length = be.Uint64(r[16:])
		u.Timestamp = int64(be.Uint64(r[24:]))
		u.Seq = be.Uint64(r[32:])

		switch u.Kind {
		case KindWrite, KindCopy:
			if u.Length > uint64(len(pb))-dataOff {
				return nil, fmt.Errorf("recordset: record %d: %v of %d bytes, %d payload bytes left: %w",
					i, u.Kind, u.Length, uint64(len(pb))-dataOff, ErrMalformed)
			}
			u.Data = pb[dataOff : dataOff+u.Length : dataOff+u.Length]
			dataOff += u.Length
		case KindMarker:
			if version != VersionMarkers {
				return nil, fmt.Errorf("recordset: record %d: marker in a version %d set: %w", i, version, ErrMalformed)
			}
			if u.Length > uint64(len(pb))-dataOff {
				return nil, fmt.Errorf("recordset: record %d: %v of %d bytes, %d payload bytes left: %w",
					i, u.Kind, u.Length, uint64(len(pb))-dataOff, ErrMalformed)
			}
			u.Data = pb[dataOff : dataOff+u.Length : dataOff+u.Length]
			dataOff += u.Length
			// Its bytes are checked once the payload's checksum holds.
			markers++
		case KindZeroes, KindTrim:
		default:
			return nil, fmt.Errorf("recordset: record %d: unknown kind %d: %w", i, u.Kind, ErrMalformed)
		}
		if _, carry := bits.Add64(u.Offset, u.Length, 0); carry != 0 {
			return nil, fmt.Errorf("recordset: record %d: offset %d + length %d overflows: %w", i, u.Offset, u.Length, ErrMalformed)
		}
		if i > 0 && u.Timestamp <= prevTS {
			return nil, fmt.Errorf("recordset: record %d: timestamp %d not after previous %d: %w", i, u.Timestamp, prevTS, ErrMalformed)
		}
		prevTS = u.Timestamp
	}
	if used != len(vols) {
		return nil, fmt.Errorf("recordset: %d of %d volumes used: %w", used, len(vols), ErrMalformed)
	}
	if version == VersionMarkers && markers == 0 {
		// One encoding per set: without markers it is version 1.
		return nil, fmt.Errorf("recordset: version %d set without markers: %w", version, ErrMalformed)
	}
	if dataOff != uint64(len(pb)) {
		return nil, fmt.Errorf("recordset: records hold %d data bytes, payload has %d: %w", dataOff, len(pb), ErrMalformed)
	}
	// The data of the records tile the payload in order, so its checksum
	// is theirs joined: large ones are checksummed on their own and
	// combined, and their checksums kept for EncodeSum; the rest are read
	// as they come. Still one pass over the bytes.
	var sum payloadSum
	for i := range rs.Updates {
		u := &rs.Updates[i]
		if len(u.Data) >= partMin {
			u.sum, u.summed = sums.Checksum(u.Data), true
			sum.combine(u.sum, len(u.Data))
		} else {
			sum.update(u.Data)
		}
	}
	if sum.crc != want {
		return nil, fmt.Errorf("recordset: payload crc %#08x, want %#08x: %w", sum.crc, want, ErrCorrupt)
	}
	for i := range rs.Updates {
		if u := &rs.Updates[i]; u.Kind == KindMarker {
			if err := checkMarker(u.Offset, u.Data); err != nil {
				return nil, fmt.Errorf("recordset: record %d: %w", i, err)
			}
		}
	}
	// parseFixed has checked lowest <= highest <= horizon, so matching the
	// first and last records puts every timestamp in range.
	if lo, hi := rs.Lowest(), rs.Highest(); lo != h.Lowest || hi != h.Highest {
		return nil, fmt.Errorf("recordset: header says timestamps %d..%d, records have %d..%d: %w",
			h.Lowest, h.Highest, lo, hi, ErrMalformed)
	}
	return rs, nil
}

// checkDistinct rejects a volume table that names a volume twice, which no
// encoder produces and which would let two indexes mean one volume.
func checkDistinct(vols []string) error {
	dup := func(name string) error {
		return fmt.Errorf("recordset: volume %q twice in table: %w", name, ErrMalformed)
	}
	if len(vols) <= volTableLinearMax {
		for i := range vols {
			for j := range i {
				if vols[i] == vols[j] {
					return dup(vols[i])
				}
			}
		}
		return nil
	}
	seen := make(map[string]struct{}, len(vols))
	for _, v := range vols {
		if _, ok := seen[v]; ok {
			return dup(v)
		}
		seen[v] = struct{}{}
	}
	return nil
}

// Summed says whether u carries the checksum of its data already (Checksum,
// or Decode's), which its encoding then combines rather than reads.
func (u *Update) Summed() bool { return u.summed }
