package transport

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// TypeIndexedAck is an Ack, secondary → primary, whose tables name each
// subsystem by its index in the Hello's Subsystems instead of by its name.
// Part of the wire format: never renumber.
//
// The secondary answers every frame of record sets with an Ack whose three
// tables name every subsystem, 50 times a second at the default interval
// whatever the load: at 128 subsystems, decoding the names and looking
// them up was about a tenth of an idle primary's CPU, 55 of the 65 µs it
// spent on each Ack (bench/RESULTS.md). The Hello already names the
// subsystems in an order both ends hold for the connection (heartbeats
// name them by it), so an index says as much as a name.
//
// A secondary sends it only to a primary that announced
// PrimaryReadsIndexedAcks in its Features frame, and only after answering
// that frame with its Welcome again; Welcomes keep the named tables. A
// primary from before it never announces the bit, and a secondary from
// before it ignores the bit and goes on sending TypeAck: each pair of
// versions speaks what the other reads.
const TypeIndexedAck byte = 8

// Entry is one entry of a Position table in index form: the subsystem's
// index in the Hello's Subsystems, and its sequence number.
type Entry struct {
	Index int
	Seq   uint64
}

// IndexedTables are a Position's three tables in index form (see Position
// for what each says), each by increasing index, an index at most once.
type IndexedTables struct {
	Through, Received, Ahead []Entry
}

// maxUvarint is the longest encoding of a uint64 as a uvarint.
const maxUvarint = binary.MaxVarintLen64

// EncodeIndexedAck returns a TypeIndexedAck frame of p, whose tables t
// holds instead of p (p's maps are not read). Its body is
//
//	u64 group, i64 time, the tables Through, Received and Ahead, each a
//	uvarint count, then per entry a uvarint index step (the index less the
//	previous entry's index and one; the index itself for the first entry)
//	and a uvarint sequence number; u64 journal free; then the optional
//	sections of a Position (see EncodePosition), in the same order and
//	under the same rules.
//
// Every uvarint is in its shortest form, so that one Ack has one encoding.
// A table of every subsystem thus costs, per subsystem, a byte of index
// and the bytes of its number (one up to 127, two up to 16,383), against
// 10 bytes and its name in a TypeAck.
func EncodeIndexedAck(p Position, t IndexedTables) []byte {
	size := 1 + 8 + 8 + 3*maxUvarint + (len(t.Through)+len(t.Received)+len(t.Ahead))*(1+maxUvarint) + 8 +
		limitsSectionSize + recoverableSectionSize + 9 + waitedSectionSize + frameOverhead
	b := append(make([]byte, 0, size), TypeIndexedAck)
	b = binary.BigEndian.AppendUint64(b, p.Group)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Time))
	for _, table := range [...][]Entry{t.Through, t.Received, t.Ahead} {
		b = binary.AppendUvarint(b, uint64(len(table)))
		next := 0
		for _, e := range table {
			b = binary.AppendUvarint(b, uint64(e.Index-next))
			b = binary.AppendUvarint(b, e.Seq)
			next = e.Index + 1
		}
	}
	b = binary.BigEndian.AppendUint64(b, p.JournalFree)
	return Seal(appendSections(b, p))
}

// DecodeIndexedAck parses a TypeIndexedAck body of a connection whose Hello
// named subsystems subsystems, into the returned Position (whose tables
// are nil) and t, whose slices it reuses: a primary decodes one per
// frame it sends. An index the Hello did not name is corrupt, as is any
// encoding EncodeIndexedAck would not write.
func DecodeIndexedAck(body []byte, subsystems int, t *IndexedTables) (Position, error) {
	r := &reader{b: body}
	p := Position{Group: r.u64(), Time: int64(r.u64())}
	t.Through = r.indexedTable(t.Through[:0], "Through", subsystems)
	t.Received = r.indexedTable(t.Received[:0], "Received", subsystems)
	t.Ahead = r.indexedTable(t.Ahead[:0], "Ahead", subsystems)
	p.JournalFree = r.u64()
	err := r.sections(&p)
	return p, err
}

// uvarint reads a uvarint in its shortest form; table and what say which,
// should it be corrupt (joined only then: decoding allocates nothing).
func (r *reader) uvarint(table, what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	switch {
	case n == 0:
		r.err = fmt.Errorf("%s table %s: body truncated: %w", table, what, ErrCorrupt)
		return 0
	case n < 0:
		r.err = fmt.Errorf("%s table %s: uvarint overflows 64 bits: %w", table, what, ErrCorrupt)
		return 0
	case n != uvarintLen(v):
		r.err = fmt.Errorf("%s table %s: uvarint %d in %d bytes, not its shortest form: %w", table, what, v, n, ErrCorrupt)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// uvarintLen is the length of v's shortest encoding as a uvarint.
func uvarintLen(v uint64) int { return max(1, (bits.Len64(v)+6)/7) }

func (r *reader) indexedTable(dst []Entry, table string, subsystems int) []Entry {
	n := r.uvarint(table, "count")
	if r.err != nil {
		return dst
	}
	// Each entry takes two bytes at least, and names another subsystem:
	// a count beyond either is not an encoding, and must not size a slice.
	if n > uint64(subsystems) || n > uint64(len(r.b)/2) {
		r.err = fmt.Errorf("%s table of %d entries, with %d subsystems in the Hello and %d bytes left: %w", table, n, subsystems, len(r.b), ErrCorrupt)
		return dst
	}
	next := uint64(0)
	for i := range n {
		step := r.uvarint(table, "index")
		seq := r.uvarint(table, "sequence number")
		if r.err != nil {
			return dst
		}
		// next ≤ subsystems, so this does not overflow where step ≥ 2^63.
		if step >= uint64(subsystems)-next {
			r.err = fmt.Errorf("%s table entry %d names subsystem index %d, the Hello named %d: %w", table, i+1, next+step, subsystems, ErrCorrupt)
			return dst
		}
		index := next + step
		dst = append(dst, Entry{Index: int(index), Seq: seq})
		next = index + 1
	}
	return dst
}

// SubsystemIndex is the order of the subsystems a connection's Hello named,
// by which a TypeIndexedAck names them.
type SubsystemIndex struct {
	names []string
	// again marks the places of names the Hello gave before (nil if none):
	// every primary's are unique, so only a malformed Hello has any.
	again []bool
	// tables are the entries of the last Ack encoded, reused.
	tables IndexedTables
}

// NewSubsystemIndex returns the index of the subsystems a Hello named, in
// its order.
func NewSubsystemIndex(hello []string) *SubsystemIndex {
	x := &SubsystemIndex{names: hello}
	seen := make(map[string]bool, len(hello))
	for i, name := range hello {
		if seen[name] {
			if x.again == nil {
				x.again = make([]bool, len(hello))
			}
			x.again[i] = true
		}
		seen[name] = true
	}
	return x
}

// EncodeAck returns a TypeIndexedAck frame of p, its tables by index. An
// entry of a subsystem the Hello did not name is left out: the primary
// knows of no other (it ignores such a name in a TypeAck). A name the
// Hello gives twice is indexed by its first place. Not safe for concurrent
// use.
func (x *SubsystemIndex) EncodeAck(p Position) []byte {
	x.tables.Through = x.table(x.tables.Through[:0], p.Through)
	x.tables.Received = x.table(x.tables.Received[:0], p.Received)
	x.tables.Ahead = x.table(x.tables.Ahead[:0], p.Ahead)
	return EncodeIndexedAck(p, x.tables)
}

func (x *SubsystemIndex) table(dst []Entry, m map[string]uint64) []Entry {
	if len(m) == 0 {
		return dst
	}
	for i, name := range x.names {
		if v, ok := m[name]; ok && (x.again == nil || !x.again[i]) {
			dst = append(dst, Entry{Index: i, Seq: v})
		}
	}
	return dst
}

// Names returns the tables t of a connection whose Hello named the
// subsystems names, by name: the maps of a TypeAck's Position. An index
// beyond names is left out.
func (t IndexedTables) Names(names []string) (through, received, ahead map[string]uint64) {
	byName := func(table []Entry) map[string]uint64 {
		m := make(map[string]uint64, len(table))
		for _, e := range table {
			if e.Index >= 0 && e.Index < len(names) {
				m[names[e.Index]] = e.Seq
			}
		}
		return m
	}
	return byName(t.Through), byName(t.Received), byName(t.Ahead)
}
