package consistency

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"duplex/crc32c"
	"duplex/recordset"
)

// A consistency group is journaled as one record:
//
//	off  size  field
//	0    4     magic "DXCG"
//	4    2     version = 1
//	6    2     subsystem count K
//	8    ...   K entries: u16 name length, name, u64 through (record-set sequence number)
//	...  ...   the group's updates encoded as a record set (see package recordset):
//	           session = the session, subsystem = "*", sequence number = group
//	           number, group = group number, horizon = consistency time
//
// All integers are big-endian. Reusing the record-set encoding gives the
// updates the same CRCs and the same hardened decoder as on the wire. Part of
// the on-disk format: never change.
const (
	groupMagic   = "DXCG"
	groupVersion = 1
	groupSubsys  = "*"
)

// ErrMalformedGroup is returned for a journal record that is not a group.
var ErrMalformedGroup = errors.New("malformed consistency group")

// EncodeGroup appends the journal encoding of g to dst.
func EncodeGroup(dst []byte, session string, g *Group) ([]byte, error) {
	b, _, err := EncodeGroupSum(dst, session, g)
	return b, err
}

// EncodeGroupSum is EncodeGroup that also returns the CRC-32C of the bytes
// it appended, for journal.AppendSum: the data of updates decoded from
// record sets is not checksummed again (see recordset.EncodeSum).
func EncodeGroupSum(dst []byte, session string, g *Group) ([]byte, uint32, error) {
	start := len(dst)
	dst, rs := appendGroupTable(dst, session, g)
	table := len(dst)
	out, sum, err := recordset.EncodeSum(dst, rs)
	if err != nil {
		return nil, 0, fmt.Errorf("encode group %d: %w", g.Number, err)
	}
	return out, crc32c.Combine(crc32c.Checksum(out[start:table]), sum, int64(len(out)-table)), nil
}

// EncodeGroupParts is EncodeGroupSum for journal.AppendParts: the data of
// the updates decoded from record sets stays where it is, in the frames
// they arrived in, and is neither copied nor read (recordset.EncodeParts).
// It returns the buffer it appended the rest to, the encoding as parts in
// order (pieces of that buffer and the updates' data), and its CRC-32C.
func EncodeGroupParts(dst []byte, session string, g *Group) ([]byte, [][]byte, uint32, error) {
	start := len(dst)
	dst, rs := appendGroupTable(dst, session, g)
	table := len(dst)
	out, parts, sum, err := recordset.EncodeParts(dst, rs, nil)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("encode group %d: %w", g.Number, err)
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	// The first part begins where the table ends, in out: it takes the
	// table in.
	parts[0] = out[start : table+len(parts[0]) : table+len(parts[0])]
	return out, parts, crc32c.Combine(crc32c.Checksum(out[start:table]), sum, int64(n)), nil
}

// appendGroupTable appends the group's magic, version and subsystem table
// to dst, and returns the record set its updates are encoded as.
func appendGroupTable(dst []byte, session string, g *Group) ([]byte, *recordset.RecordSet) {
	dst = append(dst, groupMagic...)
	dst = binary.BigEndian.AppendUint16(dst, groupVersion)
	names := make([]string, 0, len(g.Through))
	for n := range g.Through {
		names = append(names, n)
	}
	sort.Strings(names)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(names)))
	for _, n := range names {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(n)))
		dst = append(dst, n...)
		dst = binary.BigEndian.AppendUint64(dst, g.Through[n])
	}
	return dst, &recordset.RecordSet{Session: session, Subsystem: groupSubsys, Seq: g.Number, Group: g.Number, Horizon: g.Time, Updates: g.Updates}
}

// DecodeGroup parses a journal record. Update data aliases b.
func DecodeGroup(b []byte, lim recordset.Limits) (*Group, string, error) {
	bad := func(what string) (*Group, string, error) {
		return nil, "", fmt.Errorf("decode group: %s: %w", what, ErrMalformedGroup)
	}
	if len(b) < 8 || string(b[:4]) != groupMagic {
		return bad("bad magic")
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != groupVersion {
		return bad(fmt.Sprintf("version %d", v))
	}
	k := int(binary.BigEndian.Uint16(b[6:]))
	b = b[8:]
	through := make(map[string]uint64, min(k, 1024))
	prev := ""
	for i := range k {
		if len(b) < 2 {
			return bad("truncated subsystem table")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n+8 {
			return bad("truncated subsystem entry")
		}
		name := string(b[2 : 2+n])
		if i > 0 && name <= prev {
			return bad("subsystem table not sorted")
		}
		prev = name
		through[name] = binary.BigEndian.Uint64(b[2+n:])
		b = b[2+n+8:]
	}
	rs, err := recordset.Decode(b, lim)
	if err != nil {
		return nil, "", fmt.Errorf("decode group: %w", err)
	}
	if rs.Subsystem != groupSubsys || rs.Seq != rs.Group {
		return bad("record set is not a group")
	}
	return &Group{Number: rs.Group, Time: rs.Horizon, Through: through, Updates: rs.Updates}, rs.Session, nil
}
