package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The record format, described byte by byte in doc.go.
const (
	recordMagic      = "DXHR" // part of the on-disk format: never change
	recordVersion    = 1      // part of the on-disk format: never change
	recordHeaderSize = 40     // part of the on-disk format: never change
	extentHeaderSize = 18     // form, name length, offset, length: part of the on-disk format
)

// Kind is what a record says.
type Kind uint8

// Record kinds (part of the on-disk format: never change).
const (
	// KindUndo holds before images of what one group overwrote.
	KindUndo Kind = 1
	// KindVoid says the undo records of every group after Group no longer
	// describe the volumes: a recovery took the volumes back to Group.
	KindVoid Kind = 2
	// KindGap says Group was applied with no undo kept (its before images
	// would not fit in the bound or on the disk): the volumes cannot be
	// taken back past it, so the undo of every earlier group is dropped,
	// and Group is the oldest point.
	KindGap Kind = 3
)

// Record flags (part of the on-disk format: never change).
const (
	// flagLast marks the last part of a group's undo: only a group whose
	// last part is on disk is complete.
	flagLast = 1 << 0
	// flagMidBatch marks a group applied together with later ones (the
	// groups a resync held): the volumes were never at it, so it is no
	// recovery point.
	flagMidBatch = 1 << 1
	// flagStep, on an undo record, marks the last part of a step of the
	// group other than its last: the volumes with the group's updates
	// through Time applied are a point. On a void record it says that
	// Time names the point of Group the volumes were taken back to: the
	// steps of Group after it are dropped too.
	flagStep   = 1 << 2
	knownFlags = flagLast | flagMidBatch | flagStep
)

// Extent forms (part of the on-disk format: never change).
const (
	formData  = 0 // Length bytes of data follow
	formZeros = 1 // the range read as zeros; no data follows
)

// MaxName is the longest volume name an extent carries.
const MaxName = 255

// ErrMalformed reports a record that does not decode. The journal's
// checksum already held, so a malformed record is a writer's bug or a
// format this reader does not know, never a torn write.
var ErrMalformed = errors.New("malformed history record")

// Extent is the before image of one range of one volume.
type Extent struct {
	Volume string
	Offset uint64
	Length uint64
	// Zeros says the range read as zeros; Data is then nil.
	Zeros bool
	Data  []byte
}

// Record is one history record.
type Record struct {
	Kind Kind
	// Group is the consistency group whose undo this is (KindUndo), or the
	// group the volumes were taken back to (KindVoid).
	Group uint64
	// Time is Group's consistency time, Unix nanoseconds, or that of the
	// step of Group the record belongs to (Step); for a void record with
	// Step, the time of the point the volumes were taken back to.
	Time int64
	// Part numbers the records of one group's undo from 0, across its
	// steps; Last marks the final one.
	Part uint32
	Last bool
	// Step marks the last part of a step that is not the group's last (a
	// point at Time), or a void record that names a point within Group.
	Step bool
	// MidBatch says the volumes were never at Group on its own.
	MidBatch bool
	// State is what the caller keeps with the group (the secondary: the
	// pair states as of it), opaque here.
	State   []byte
	Extents []Extent
}

// size is the encoded size of r.
func (r *Record) size() int {
	n := recordHeaderSize + len(r.State)
	for _, e := range r.Extents {
		n += extentHeaderSize + len(e.Volume) + len(e.Data)
	}
	return n
}

// Encode appends r's encoding to b.
func (r *Record) Encode(b []byte) ([]byte, error) {
	if len(r.State) > math.MaxUint32 || len(r.Extents) > math.MaxUint32 {
		return nil, fmt.Errorf("history: record of group %d too large", r.Group)
	}
	var flags byte
	if r.Last {
		flags |= flagLast
	}
	if r.MidBatch {
		flags |= flagMidBatch
	}
	if r.Step {
		flags |= flagStep
	}
	var h [recordHeaderSize]byte
	copy(h[0:4], recordMagic)
	h[4] = recordVersion
	h[5] = byte(r.Kind)
	h[6] = flags
	binary.BigEndian.PutUint64(h[8:16], r.Group)
	binary.BigEndian.PutUint64(h[16:24], uint64(r.Time))
	binary.BigEndian.PutUint32(h[24:28], r.Part)
	binary.BigEndian.PutUint32(h[28:32], uint32(len(r.State)))
	binary.BigEndian.PutUint32(h[32:36], uint32(len(r.Extents)))
	b = append(b, h[:]...)
	b = append(b, r.State...)
	for _, e := range r.Extents {
		if len(e.Volume) == 0 || len(e.Volume) > MaxName {
			return nil, fmt.Errorf("history: volume name %q: must be 1 to %d bytes", e.Volume, MaxName)
		}
		var x [extentHeaderSize]byte
		form := byte(formData)
		if e.Zeros {
			form = formZeros
		} else if uint64(len(e.Data)) != e.Length {
			return nil, fmt.Errorf("history: extent of %s at %d: %d bytes of data for length %d", e.Volume, e.Offset, len(e.Data), e.Length)
		}
		x[0] = form
		x[1] = byte(len(e.Volume))
		b = append(b, x[:2]...)
		b = append(b, e.Volume...)
		binary.BigEndian.PutUint64(x[2:10], e.Offset)
		binary.BigEndian.PutUint64(x[10:18], e.Length)
		b = append(b, x[2:18]...)
		if !e.Zeros {
			b = append(b, e.Data...)
		}
	}
	return b, nil
}

// Decode decodes one record. Extent data aliases b. Any input either
// decodes or fails with an error wrapping ErrMalformed; no input makes it
// allocate more than a small multiple of len(b).
func Decode(b []byte) (*Record, error) {
	r, rest, err := decodeHeader(b)
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(b[32:36])
	// Every extent takes at least its header and a one-byte name: a count
	// the bytes left cannot hold is refused before anything is allocated.
	if uint64(n) > uint64(len(rest))/(extentHeaderSize+1) {
		return nil, malformed("%d extents in %d bytes", n, len(rest))
	}
	r.Extents = make([]Extent, 0, n)
	for i := uint32(0); i < n; i++ {
		if len(rest) < 2 {
			return nil, malformed("extent %d: truncated", i)
		}
		form, nameLen := rest[0], int(rest[1])
		if nameLen == 0 {
			return nil, malformed("extent %d: empty volume name", i)
		}
		if len(rest) < extentHeaderSize+nameLen {
			return nil, malformed("extent %d: truncated", i)
		}
		e := Extent{Volume: string(rest[2 : 2+nameLen])}
		rest = rest[2+nameLen:]
		e.Offset = binary.BigEndian.Uint64(rest[0:8])
		e.Length = binary.BigEndian.Uint64(rest[8:16])
		rest = rest[16:]
		if e.Offset+e.Length < e.Offset {
			return nil, malformed("extent %d: range at %d of %d bytes overflows", i, e.Offset, e.Length)
		}
		switch form {
		case formZeros:
			e.Zeros = true
		case formData:
			if e.Length > uint64(len(rest)) {
				return nil, malformed("extent %d: %d bytes of data, %d left", i, e.Length, len(rest))
			}
			e.Data = rest[:e.Length:e.Length]
			rest = rest[e.Length:]
		default:
			return nil, malformed("extent %d: unknown form %d", i, form)
		}
		r.Extents = append(r.Extents, e)
	}
	if len(rest) != 0 {
		return nil, malformed("%d bytes after the last extent", len(rest))
	}
	return r, nil
}

// decodeHeader decodes the fixed header and the state, and returns what
// follows them.
func decodeHeader(b []byte) (*Record, []byte, error) {
	if len(b) < recordHeaderSize {
		return nil, nil, malformed("%d bytes, shorter than the %d-byte header", len(b), recordHeaderSize)
	}
	if string(b[0:4]) != recordMagic {
		return nil, nil, malformed("bad magic %q", b[0:4])
	}
	if b[4] != recordVersion {
		return nil, nil, malformed("unsupported version %d", b[4])
	}
	r := &Record{Kind: Kind(b[5])}
	if r.Kind != KindUndo && r.Kind != KindVoid && r.Kind != KindGap {
		return nil, nil, malformed("unknown kind %d", b[5])
	}
	flags := b[6]
	if flags&^knownFlags != 0 || b[7] != 0 || binary.BigEndian.Uint32(b[36:40]) != 0 {
		return nil, nil, malformed("unknown flags %#x or reserved bytes set", flags)
	}
	r.Last, r.MidBatch, r.Step = flags&flagLast != 0, flags&flagMidBatch != 0, flags&flagStep != 0
	r.Group = binary.BigEndian.Uint64(b[8:16])
	r.Time = int64(binary.BigEndian.Uint64(b[16:24]))
	r.Part = binary.BigEndian.Uint32(b[24:28])
	sl := binary.BigEndian.Uint32(b[28:32])
	rest := b[recordHeaderSize:]
	if uint64(sl) > uint64(len(rest)) {
		return nil, nil, malformed("state of %d bytes, %d left", sl, len(rest))
	}
	if sl > 0 {
		r.State = rest[:sl:sl]
	}
	rest = rest[sl:]
	if r.Kind == KindVoid && (binary.BigEndian.Uint32(b[32:36]) != 0 || len(rest) != 0 || r.Part != 0) {
		return nil, nil, malformed("void record with extents")
	}
	if r.Kind == KindGap && (binary.BigEndian.Uint32(b[32:36]) != 0 || len(rest) != 0 || r.Part != 0 || !r.Last || r.Step) {
		return nil, nil, malformed("gap record with extents or parts")
	}
	if r.Kind == KindUndo && r.Step && r.Last {
		return nil, nil, malformed("undo record flagged both the last of its group and the end of an earlier step")
	}
	return r, rest, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
