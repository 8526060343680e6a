package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Message types. Part of the wire format: never renumber.
const (
	TypeHello     byte = 1 // primary → secondary, first on a connection
	TypeWelcome   byte = 2 // secondary → primary, answer to Hello
	TypeRecordSet byte = 3 // primary → secondary, one encoded record set
	TypeAck       byte = 4 // secondary → primary, cumulative
	TypeRefuse    byte = 5 // secondary → primary, then it closes
)

// A frame is: u8 type, body, u32 CRC-32C (big-endian) of the type and body,
// or of the type alone for a record set, whose body checks itself.
const frameOverhead = 5

// FrameOverhead is what a frame adds to its body: the type byte and the CRC.
const FrameOverhead = frameOverhead

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is returned for a frame whose CRC does not match or whose body is
// malformed.
var ErrCorrupt = errors.New("transport: corrupt frame")

// Hello opens a session on a connection.
type Hello struct {
	Session    string
	Subsystems []string
	// Instance is random per primary process. A secondary that sees the same
	// instance reconnect keeps what it received but has not yet journaled.
	Instance uint64
	// Volumes are the primary's volumes with their sizes: the secondary
	// refuses a primary whose volumes it cannot hold before it accepts a
	// single update, so nothing it would fail to apply is ever journaled.
	Volumes []VolumeInfo
	// Generation identifies the history of the primary's data. A secondary
	// follows one generation; a primary of another history is refused.
	Generation Generation
	// Overwrite, if not nil, is the operator's consent (duplex primary
	// --overwrite-secondary) that the secondary's copies be overwritten
	// by this primary's, given for the one generation the secondary
	// named in its refusal (zero: a secondary that follows none). A
	// consent that names another generation is none: it was given for
	// other copies.
	Overwrite *Generation
}

// Generation identifies one history of a session's data, as a data-generation
// UUID does in DRBD: a primary's pair state holds one from its creation, a
// secondary follows one, and recover starts a new one at the secondary. Two
// sites whose generations differ hold histories that diverged, and never
// replicate. Zero means none yet.
type Generation uint64

// NewGeneration returns a random, non-zero generation.
func NewGeneration() Generation {
	for {
		if g := Generation(rand.Uint64()); g != 0 {
			return g
		}
	}
}

func (g Generation) String() string { return fmt.Sprintf("%016x", uint64(g)) }

// MarshalText writes the generation as 16 hex digits.
func (g Generation) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// UnmarshalText reads 16 hex digits.
func (g *Generation) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 16, 64)
	if err != nil {
		return fmt.Errorf("generation %q: %w", b, err)
	}
	*g = Generation(v)
	return nil
}

// VolumeInfo names a volume and its size in bytes.
type VolumeInfo struct {
	Name string
	Size int64
}

// Position is what the secondary has made durable: the journaled consistency
// group, its consistency time, and per subsystem the last record-set sequence
// number all of whose updates are journaled.
type Position struct {
	Group   uint64
	Time    int64
	Through map[string]uint64
	// Received is, per subsystem, the last record-set sequence number accepted
	// in order (not yet necessarily journaled). The primary retransmits only
	// what lies beyond it.
	Received map[string]uint64
	// Ahead is, per subsystem, the highest sequence number held while waiting
	// for a gap before it to fill: the primary resends the missing one at once.
	Ahead map[string]uint64
	// JournalFree is the room in bytes a resync has in the secondary's
	// journal: the free space of its file system less what the journal
	// keeps for itself (0: unknown). A resync is journaled whole before it
	// is applied, so the primary checks it fits before starting one, by
	// the same measure the secondary gives up a hold by.
	JournalFree uint64
	// Limits are what the secondary accepts, announced in a Welcome only
	// when they differ from BaselineLimits, which a Welcome without them
	// means (zero here). The primary forms every record set within them.
	Limits Limits
	// Recoverable, when not zero, is the consistency time a restart of the
	// secondary, or recover, leaves its volumes at, where that is behind
	// Time: a resync holds them at the last group before it, and the groups
	// journaled since are not applied. Zero means Time. Time still says
	// what is journaled, which is what frees the primary's sidefile; this
	// is what the secondary is a crash-consistent image of.
	Recoverable int64
	// Features are what the secondary takes beyond the baseline
	// (FeatureBundles), announced in a Welcome; zero in one of a secondary
	// from before features were announced.
	Features uint64
	// Inconsistent names, sorted, the volumes the secondary holds, as of
	// Time, consistent as of no time: a first copy or a resync accepted as
	// inconsistent not ended, a hold it gave up for lack of journal room
	// (the held groups applied over the image the hold kept), a volume
	// deleted part-way through a resync, or one it never had a whole copy
	// of. Only a copy of the volume that ends takes it out. The primary,
	// which knows of all but the given-up holds and what came before its
	// own start, claims no time for these.
	Inconsistent []string
	// Waited, when not zero, says the receipt comes from a secondary
	// waiting on its disk (a journal write and fsync, the applier, or,
	// coupled, room in its journal's file system), and
	// how long it has so far: it takes no record set meanwhile, and those
	// sent since it began wait read ahead or in the link's buffers, not
	// lost. The primary sends nothing again for want of progress while it
	// waits (a gap it reports is sent again as ever): each resend period
	// of a slow fsync would send everything outstanding once more, each a
	// duplicate dropped. Sent only to a primary that reads it
	// (PrimaryReadsWaited), and never in a Welcome.
	Waited time.Duration
}

// RecoversTo returns the consistency time the secondary recovers to.
func (p Position) RecoversTo() int64 {
	if p.Recoverable != 0 {
		return min(p.Recoverable, p.Time)
	}
	return p.Time
}

// Limits are what a secondary accepts: in one record set (the fields of
// recordset.Limits) and in one frame of the link, type and seal included.
// Announced, all four are non-zero.
type Limits struct {
	MaxHeader  uint64
	MaxPayload uint64
	MaxRecords uint64
	MaxFrame   uint64
}

// BaselineLimits are the limits of a secondary that announces none: every
// secondary had these before secondaries announced their limits, and a
// secondary with these announces nothing, so its Welcome is one that a
// primary of before reads. Part of the wire format: never change.
var BaselineLimits = Limits{MaxHeader: 1 << 20, MaxPayload: 64 << 20, MaxRecords: 1 << 20, MaxFrame: 256 << 20}

// Announced returns the limits a Welcome tells the primary to keep: the
// ones it carries, or BaselineLimits.
func (p Position) Announced() Limits {
	if p.Limits == (Limits{}) {
		return BaselineLimits
	}
	return p.Limits
}

// sectionLimits opens the optional section of a Position that announces
// the secondary's limits. Part of the wire format: never renumber.
const sectionLimits byte = 1

// limitsSectionSize is the length of the section: its kind and four limits.
const limitsSectionSize = 1 + 4*8

// sectionRecoverable opens the optional section of a Position that says the
// secondary recovers to a time behind the journaled one. Part of the wire
// format: never renumber.
const sectionRecoverable byte = 2

// recoverableSectionSize is the length of the section: its kind and a time.
const recoverableSectionSize = 1 + 8

// sectionFeatures opens the optional section of a Welcome that announces
// the features the secondary takes. Part of the wire format: never
// renumber.
const sectionFeatures byte = 3

// sectionInconsistent opens the optional section of a Position that names
// the volumes the secondary holds consistent as of no time. Part of the wire
// format: never renumber.
const sectionInconsistent byte = 4

// sectionWaited opens the optional section of a Position that says the
// secondary waits on its disk, and for how long (Position.Waited). Part
// of the wire format: never renumber.
const sectionWaited byte = 5

// waitedSectionSize is the length of the section: its kind and a duration.
const waitedSectionSize = 1 + 8

// Welcome and Ack both carry a Position.
type Welcome = Position

// Ack acknowledges, cumulatively, everything up to Position.
type Ack = Position

// Frame builds a frame of type typ around body.
func Frame(typ byte, body []byte) []byte {
	f := make([]byte, 0, len(body)+frameOverhead)
	f = append(f, typ)
	f = append(f, body...)
	return Seal(f)
}

// Seal appends the CRC to a frame that holds its type byte and body, so that a
// large body can be encoded in place after the type byte without another copy.
func Seal(f []byte) []byte {
	return binary.BigEndian.AppendUint32(f, crc32.Checksum(f[:covered(f)], castagnoli))
}

// covered is how much of a frame (without its CRC) the frame CRC covers: all
// of it, except for a record set, which carries CRCs of its own over header
// and payload (checked by recordset.Decode); checksumming its megabytes a
// second time on each side bought nothing.
func covered(f []byte) int {
	if len(f) > 0 && f[0] == TypeRecordSet {
		return 1
	}
	if len(f) > 0 && f[0] == TypeBundle {
		return bundleCovered(f)
	}
	return len(f)
}

// Open checks a frame's CRC and returns its type and body (aliasing f).
func Open(f []byte) (byte, []byte, error) {
	if len(f) < frameOverhead {
		return 0, nil, fmt.Errorf("frame of %d bytes: %w", len(f), ErrCorrupt)
	}
	n := len(f) - 4
	if crc32.Checksum(f[:covered(f[:n])], castagnoli) != binary.BigEndian.Uint32(f[n:]) {
		return 0, nil, fmt.Errorf("frame type %d: CRC mismatch: %w", f[0], ErrCorrupt)
	}
	return f[0], f[1:n], nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("body truncated: %w", ErrCorrupt)
		return false
	}
	return true
}

func (r *reader) u8() uint8 {
	if !r.need(1) {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if !r.need(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) str() string {
	n := int(r.u16())
	if !r.need(n) {
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// tableNames interns the names of Position tables: every acknowledgement
// names the same subsystems, three times, and a new string for each was
// most of what decoding one cost at 128 subsystems.
var tableNames struct {
	sync.Mutex
	m map[string]string
}

// maxTableNames bounds what tableNames keeps, whatever names a peer sends.
const maxTableNames = 1 << 14

// name reads a string, interned.
func (r *reader) name() string {
	n := int(r.u16())
	if !r.need(n) {
		return ""
	}
	b := r.b[:n]
	r.b = r.b[n:]
	tableNames.Lock()
	defer tableNames.Unlock()
	if s, ok := tableNames.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if tableNames.m == nil {
		tableNames.m = map[string]string{}
	}
	if len(tableNames.m) < maxTableNames {
		tableNames.m[s] = s
	}
	return s
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes: %w", len(r.b), ErrCorrupt)
	}
	return r.err
}

// EncodeHello returns a Hello frame. Its body is
//
//	u16 session length, session, u16 count and per subsystem u16 name
//	length and name, u64 instance, u16 count and per volume u16 name
//	length, name and u64 size, u64 generation;
//	then, only with the operator's consent to overwrite the secondary's
//	copies: u8 1, u64 the generation the consent names (zero: none).
func EncodeHello(h Hello) []byte {
	b := appendString(nil, h.Session)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Subsystems)))
	for _, s := range h.Subsystems {
		b = appendString(b, s)
	}
	b = binary.BigEndian.AppendUint64(b, h.Instance)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Volumes)))
	for _, v := range h.Volumes {
		b = appendString(b, v.Name)
		b = binary.BigEndian.AppendUint64(b, uint64(v.Size))
	}
	b = binary.BigEndian.AppendUint64(b, uint64(h.Generation))
	if h.Overwrite != nil {
		// Only with the consent: a secondary from before it refuses
		// a Hello longer than it knows, which keeps the copies of one
		// that cannot read the consent as they are.
		b = append(b, helloOverwrite)
		b = binary.BigEndian.AppendUint64(b, uint64(*h.Overwrite))
	}
	return Frame(TypeHello, b)
}

// helloOverwrite tags the Hello's optional section that carries
// Overwrite. Part of the wire format: never renumber.
const helloOverwrite byte = 1

// DecodeHello parses a Hello body.
func DecodeHello(body []byte) (Hello, error) {
	r := &reader{b: body}
	h := Hello{Session: r.str()}
	n := int(r.u16())
	for i := 0; i < n && r.err == nil; i++ {
		h.Subsystems = append(h.Subsystems, r.str())
	}
	h.Instance = r.u64()
	n = int(r.u16())
	for i := 0; i < n && r.err == nil; i++ {
		h.Volumes = append(h.Volumes, VolumeInfo{Name: r.str(), Size: int64(r.u64())})
	}
	h.Generation = Generation(r.u64())
	if r.err == nil && len(r.b) > 0 {
		if tag := r.b[0]; tag != helloOverwrite {
			return h, fmt.Errorf("hello section %d: %w", tag, ErrCorrupt)
		}
		r.b = r.b[1:]
		g := Generation(r.u64())
		h.Overwrite = &g
	}
	return h, r.done()
}

// EncodePosition returns a Welcome or Ack frame. Its body is
//
//	u64 group, i64 time, the tables Through, Received and Ahead (each u16
//	count, then per entry u16 name length, name, u64 value, names sorted
//	and unique), u64 journal free;
//	then, only when the secondary announces limits (a Welcome whose limits
//	differ from BaselineLimits): u8 1, u64 max header, u64 max payload,
//	u64 max records, u64 max frame;
//	then, only when the secondary recovers to a time behind the journaled
//	one (a resync holds it): u8 2, i64 recoverable time (not zero, not
//	after the time above);
//	then, only when the secondary announces features (in a Welcome): u8 3,
//	u64 feature bits (not zero);
//	then, only when the secondary holds volumes consistent as of no time:
//	u8 4, u16 count (not zero), per volume u16 name length (not zero) and
//	name, names sorted and unique;
//	then, only when the secondary waits on its disk: u8 5, u64
//	nanoseconds waited (not zero, at most 2^63-1).
//
// Sections come in the order of their kinds, each at most once. A Welcome
// without the limits section is byte for byte the Welcome of a secondary
// from before limits were announced, and means BaselineLimits: the section
// costs compatibility only where the baseline would not work anyway. A
// Position without the recoverable section is the one of a secondary from
// before it, and means the journaled time is recovered to; a primary from
// before it cannot read one that carries it, so a primary is upgraded
// before its secondary. The same holds for the features section: without
// it, the secondary takes only what every secondary took before (no
// bundles, no compressed record sets), and a primary reads and speaks to
// both. A Position without the
// inconsistent section says every volume is consistent as of some time, as
// a secondary from before it did; a primary from before it cannot read one
// that carries it, so a secondary sends it only to a primary that announced
// PrimaryReadsInconsistent (TypeFeatures): to any other, every Position goes
// without it. The waited section alike, to a primary that announced
// PrimaryReadsWaited.
func EncodePosition(typ byte, p Position) []byte {
	return TableOrder(nil).EncodePosition(typ, p)
}

// TableOrder is the sorted names a Position's tables usually hold (a
// session's subsystems), so that encoding one walks them instead of
// sorting each table's names: a secondary sends a Position with three
// tables of every subsystem on every frame it receives, and sorting them
// was 8 % of an idle secondary's CPU at 128 subsystems. The bytes are
// those EncodePosition writes.
type TableOrder []string

// NewTableOrder returns the order of names: sorted, each once.
func NewTableOrder(names []string) TableOrder {
	return slices.Compact(slices.Sorted(slices.Values(names)))
}

// EncodePosition returns a Welcome or Ack frame, byte for byte the one
// EncodePosition returns. A table holding a name not in o is sorted, as
// EncodePosition sorts it.
func (o TableOrder) EncodePosition(typ byte, p Position) []byte {
	// Encoded after the type byte in one buffer, sized for names of up to
	// 16 bytes: Frame would copy the body once more.
	size := 1 + 8 + 8 + 3*2 + (len(p.Through)+len(p.Received)+len(p.Ahead))*(2+16+8) + 8 + limitsSectionSize + recoverableSectionSize + 9 + waitedSectionSize + frameOverhead
	b := append(make([]byte, 0, size), typ)
	b = binary.BigEndian.AppendUint64(b, p.Group)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Time))
	b = o.appendTable(b, p.Through)
	b = o.appendTable(b, p.Received)
	b = o.appendTable(b, p.Ahead)
	b = binary.BigEndian.AppendUint64(b, p.JournalFree)
	return Seal(appendSections(b, p))
}

// appendSections appends the optional sections of p (see EncodePosition).
func appendSections(b []byte, p Position) []byte {
	if p.Limits != (Limits{}) {
		b = append(b, sectionLimits)
		for _, v := range []uint64{p.Limits.MaxHeader, p.Limits.MaxPayload, p.Limits.MaxRecords, p.Limits.MaxFrame} {
			b = binary.BigEndian.AppendUint64(b, v)
		}
	}
	if p.Recoverable != 0 {
		b = append(b, sectionRecoverable)
		b = binary.BigEndian.AppendUint64(b, uint64(p.Recoverable))
	}
	if p.Features != 0 {
		b = append(b, sectionFeatures)
		b = binary.BigEndian.AppendUint64(b, p.Features)
	}
	if len(p.Inconsistent) > 0 {
		names := slices.Compact(slices.Sorted(slices.Values(p.Inconsistent)))
		b = append(b, sectionInconsistent)
		b = binary.BigEndian.AppendUint16(b, uint16(len(names)))
		for _, n := range names {
			b = appendString(b, n)
		}
	}
	if p.Waited != 0 {
		b = append(b, sectionWaited)
		b = binary.BigEndian.AppendUint64(b, uint64(p.Waited))
	}
	return b
}

func (o TableOrder) appendTable(b []byte, m map[string]uint64) []byte {
	if len(o) > 0 {
		start := len(b)
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		found := 0
		for _, n := range o {
			if v, ok := m[n]; ok {
				b = appendString(b, n)
				b = binary.BigEndian.AppendUint64(b, v)
				found++
			}
		}
		if found == len(m) {
			return b
		}
		// A name the order lacks: sorted, as every table is without one.
		b = b[:start]
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	b = binary.BigEndian.AppendUint16(b, uint16(len(names)))
	for _, n := range names {
		b = appendString(b, n)
		b = binary.BigEndian.AppendUint64(b, m[n])
	}
	return b
}

func (r *reader) table() map[string]uint64 {
	n := int(r.u16())
	// Sized for what it says it holds, as far as the bytes left can: an
	// acknowledgement names every subsystem, and growing a map of 128 as
	// it fills rehashes it five times.
	m := make(map[string]uint64, min(n, len(r.b)/(2+8)))
	prev := ""
	for i := 0; i < n && r.err == nil; i++ {
		name := r.name()
		// Names are written sorted and unique; anything else is not ours.
		if i > 0 && name <= prev && r.err == nil {
			r.err = fmt.Errorf("table names out of order: %w", ErrCorrupt)
		}
		prev = name
		m[name] = r.u64()
	}
	return m
}

// DecodePosition parses a Welcome or Ack body.
func DecodePosition(body []byte) (Position, error) {
	r := &reader{b: body}
	p := Position{Group: r.u64(), Time: int64(r.u64())}
	p.Through = r.table()
	p.Received = r.table()
	p.Ahead = r.table()
	p.JournalFree = r.u64()
	err := r.sections(&p)
	return p, err
}

// sections reads the optional sections of a Position into p, and checks
// that nothing follows them.
func (r *reader) sections(p *Position) error {
	if r.err == nil && len(r.b) > 0 && r.b[0] == sectionLimits {
		r.b = r.b[1:]
		p.Limits = Limits{MaxHeader: r.u64(), MaxPayload: r.u64(), MaxRecords: r.u64(), MaxFrame: r.u64()}
		l := p.Limits
		if r.err == nil && (l.MaxHeader == 0 || l.MaxPayload == 0 || l.MaxRecords == 0 || l.MaxFrame == 0) {
			// Not announced is no section; a zero limit accepts nothing.
			return fmt.Errorf("announced limits %+v with a zero: %w", l, ErrCorrupt)
		}
	}
	if r.err == nil && len(r.b) > 0 && r.b[0] == sectionRecoverable {
		r.b = r.b[1:]
		p.Recoverable = int64(r.u64())
		if r.err == nil && (p.Recoverable <= 0 || p.Recoverable > p.Time) {
			// Recovering to the journaled time is no section.
			return fmt.Errorf("recoverable time %d with journaled time %d: %w", p.Recoverable, p.Time, ErrCorrupt)
		}
	}
	if r.err == nil && len(r.b) > 0 && r.b[0] == sectionFeatures {
		r.b = r.b[1:]
		p.Features = r.u64()
		if r.err == nil && p.Features == 0 {
			// No features is no section.
			return fmt.Errorf("features section without features: %w", ErrCorrupt)
		}
	}
	if r.err == nil && len(r.b) > 0 && r.b[0] == sectionInconsistent {
		r.b = r.b[1:]
		n := int(r.u16())
		if r.err == nil && n == 0 {
			// No volume is no section.
			return fmt.Errorf("inconsistent section of no volume: %w", ErrCorrupt)
		}
		for i := 0; i < n && r.err == nil; i++ {
			name := r.str()
			if r.err != nil {
				break
			}
			if name == "" || (i > 0 && name <= p.Inconsistent[i-1]) {
				return fmt.Errorf("inconsistent volume %q after %d names: empty, out of order or twice: %w", name, i, ErrCorrupt)
			}
			p.Inconsistent = append(p.Inconsistent, name)
		}
	}
	if r.err == nil && len(r.b) > 0 && r.b[0] == sectionWaited {
		r.b = r.b[1:]
		p.Waited = time.Duration(r.u64())
		if r.err == nil && p.Waited <= 0 {
			// Not waiting is no section; a negative wait is no encoding.
			return fmt.Errorf("waited %d ns: %w", int64(p.Waited), ErrCorrupt)
		}
	}
	if r.err == nil && len(r.b) > 0 {
		return fmt.Errorf("position section %d: %w", r.b[0], ErrCorrupt)
	}
	return r.done()
}

// Refusal is what a Refuse frame says: why the secondary refuses the
// primary, whether that passes by itself, and what kind of refusal it is
// where the primary acts on the kind.
type Refusal struct {
	Reason string
	// Passing says that the secondary takes this primary again by
	// itself, shortly, with no operator acting: it opens its disk again
	// after a fault, writes again at the next dial a record it could not
	// write, ends an apply under way, takes the primary's next connection
	// once the primary has suspended its pairs over a stale record set. A
	// primary's stop waits for such a secondary as for a link that may
	// come back. A refusal that is not passing lasts until an operator
	// acts (another session, a fence, no consent to overwrite the
	// secondary's copies), and the stop gives up on it at once: waiting
	// would ship nothing.
	Passing bool
	// Kind names the refusal where the primary acts on what it is, not
	// only on whether it passes; RefusalUnnamed for every other refusal,
	// and for every refusal of a secondary from before kinds.
	Kind RefusalKind
}

// RefusalKind names a refusal a primary acts on by itself. Part of the
// wire format: never renumber. A kind this build does not know, a newer
// secondary's, is kept as read, and acted on by no one.
type RefusalKind uint8

const (
	// RefusalUnnamed is a refusal the primary acts on by its passing
	// flag alone.
	RefusalUnnamed RefusalKind = 0
	// RefusalStale refuses a record set with an update stamped at or
	// before the secondary's consistency time (the primary's clock went
	// back), or out of order (stamped alike with another subsystem's
	// update, or not after its own subsystem's last): sent again, it is refused again, so the primary suspends its
	// pairs, which drops it into their bitmaps, and resyncs them, which
	// stamps those updates anew.
	RefusalStale RefusalKind = 1
)

// Sections after a Refuse's reason, each at most once, in this order.
// Part of the wire format: never renumber.
const (
	// refusePassing says the refusal passes. Absent, the refusal lasts: a
	// frame of a secondary from before the section, which could not say,
	// is read as lasting (see DecodeRefuse).
	refusePassing byte = 1
	// refuseKind is followed by the refusal's kind, never RefusalUnnamed:
	// an unnamed refusal has no section. A primary that reads the passing
	// section and not this one takes a frame with it for a damaged one,
	// lasting (see DecodeRefuse), so a kind is named only on refusals
	// such a primary read as lasting already: a stale record set's, which
	// secondaries sent as lasting until it was named.
	refuseKind byte = 2
)

// maxReason bounds a Refuse's reason, in bytes.
const maxReason = 1024

// cutReason cuts a reason longer than maxReason between characters: the
// primary shows it in its status and log, where a character cut in two
// is bytes that are no text. A reason that is no UTF-8 to begin with is
// cut within a character's length of the bound all the same.
func cutReason(reason string) string {
	if len(reason) <= maxReason {
		return reason
	}
	cut := maxReason
	for i := 1; i < utf8.UTFMax && !utf8.RuneStart(reason[cut]); i++ {
		cut--
	}
	return reason[:cut]
}

// EncodeRefuse returns a Refuse frame carrying r; a reason longer than
// 1 KiB is cut, between characters. A lasting unnamed refusal is byte for
// byte what secondaries sent before refusals said whether they pass.
func EncodeRefuse(r Refusal) []byte {
	b := appendString(nil, cutReason(r.Reason))
	if r.Passing {
		b = append(b, refusePassing)
	}
	if r.Kind != RefusalUnnamed {
		b = append(b, refuseKind, byte(r.Kind))
	}
	return Frame(TypeRefuse, b)
}

// DecodeRefuse parses a Refuse body. A body without the passing section is
// a lasting refusal: a secondary from before the section sends none,
// whatever its reason, and the stop of a primary that reads such a refusal
// as lasting gives up at once and is saved unclean, so the next start
// copies the activity log's regions again, the most a refusal that would
// have passed costs; read as passing, every refusal that lasts (another
// session, a fence) would hold the stop for the whole patience and then
// end it unclean all the same. A body without the kind section is
// unnamed, as every refusal of a secondary from before kinds. On an
// error, Reason holds what could be read of it and the refusal is
// lasting and unnamed, for the same reason: a damaged frame is acted on
// by no one. A primary from before the sections reads the reason and
// takes the sections for trailing bytes, an error it ignores.
func DecodeRefuse(body []byte) (Refusal, error) {
	r := &reader{b: body}
	reason := r.str()
	if len(reason) > maxReason {
		return Refusal{Reason: cutReason(reason)}, fmt.Errorf("refusal reason of %d bytes: %w", len(reason), ErrCorrupt)
	}
	got := Refusal{Reason: reason}
	if r.err == nil && len(r.b) > 0 && r.b[0] == refusePassing {
		r.b = r.b[1:]
		got.Passing = true
	}
	if r.err == nil && len(r.b) > 0 && r.b[0] == refuseKind {
		r.b = r.b[1:]
		got.Kind = RefusalKind(r.u8())
		if r.err == nil && got.Kind == RefusalUnnamed {
			// An unnamed refusal is no section.
			return Refusal{Reason: reason}, fmt.Errorf("refusal kind section naming no kind: %w", ErrCorrupt)
		}
	}
	if err := r.done(); err != nil {
		return Refusal{Reason: reason}, err
	}
	return got, nil
}
