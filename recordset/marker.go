package recordset

import (
	"fmt"
)

// PairState is the pair state a marker announces. Part of the wire format:
// never renumber.
type PairState uint8

const (
	// StateFirstCopy: the volume's very first initial copy begins. Its
	// secondary copy has never been consistent and is not until the copy
	// ends.
	StateFirstCopy PairState = 1
	// StateResync: a copy of Bytes bytes begins over a secondary copy that
	// was consistent (a resume, an auto-resume, a crash-recovery resync, or
	// a full copy again). Unless Inconsistent is set, the secondary keeps
	// the volumes at the last group before it until the copy ends.
	StateResync PairState = 2
	// StateCopyEnd: every copy update of the current copy or resync has a
	// timestamp before this marker's.
	StateCopyEnd PairState = 3
	// StateSuspended: writes are no longer shadowed from this marker on.
	StateSuspended PairState = 4
	// StateDeleted: the volume is no longer a pair.
	StateDeleted PairState = 5
	// StateHoldReleased: the secondary gave up holding its volumes for the
	// volume's resync (its journal was nearly full): the volume's copy is
	// not consistent until a later copy of it ends. Only a secondary writes
	// it, into its own journal; a primary never sends it.
	StateHoldReleased PairState = 6
)

func (s PairState) String() string {
	switch s {
	case StateFirstCopy:
		return "first-copy"
	case StateResync:
		return "resync"
	case StateCopyEnd:
		return "copy-end"
	case StateSuspended:
		return "suspended"
	case StateDeleted:
		return "deleted"
	case StateHoldReleased:
		return "hold-released"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarkerSize is the length of a marker's payload. Part of the wire format.
const MarkerSize = 16

// markerInconsistent is the flag bit of a resync whose operator accepted an
// inconsistent secondary while it runs.
const markerInconsistent = 0x01

// Marker is the payload of a KindMarker update.
type Marker struct {
	State PairState
	// Inconsistent, for StateResync, says the secondary need not hold its
	// volumes at the last consistent group while the resync runs.
	Inconsistent bool
	// Bytes, for StateFirstCopy and StateResync, is how much the copy will
	// send at most.
	Bytes uint64
}

// Update returns the marker as an update of vol, to be stamped and
// captured like a write.
func (m Marker) Update(vol string) Update {
	b := make([]byte, MarkerSize)
	b[0] = byte(m.State)
	if m.Inconsistent {
		b[1] = markerInconsistent
	}
	be.PutUint64(b[8:], m.Bytes)
	return Update{Volume: vol, Kind: KindMarker, Length: MarkerSize, Data: b}
}

// DecodeMarker returns the marker that u carries.
func DecodeMarker(u Update) (Marker, error) {
	if err := checkMarker(u.Offset, u.Data); err != nil {
		return Marker{}, err
	}
	return Marker{State: PairState(u.Data[0]), Inconsistent: u.Data[1]&markerInconsistent != 0, Bytes: be.Uint64(u.Data[8:])}, nil
}

// checkMarker rejects a marker payload an encoder would not have produced.
func checkMarker(off uint64, b []byte) error {
	if off != 0 {
		return fmt.Errorf("recordset: marker at offset %d, want 0: %w", off, ErrMalformed)
	}
	if len(b) != MarkerSize {
		return fmt.Errorf("recordset: marker of %d bytes, want %d: %w", len(b), MarkerSize, ErrMalformed)
	}
	if s := PairState(b[0]); s < StateFirstCopy || s > StateHoldReleased {
		return fmt.Errorf("recordset: marker of unknown state %d: %w", b[0], ErrMalformed)
	}
	if b[1]&^markerInconsistent != 0 {
		return fmt.Errorf("recordset: marker flags %#02x: %w", b[1], ErrMalformed)
	}
	if b[1] != 0 && PairState(b[0]) != StateResync {
		return fmt.Errorf("recordset: inconsistent flag on a %v marker: %w", PairState(b[0]), ErrMalformed)
	}
	for _, r := range b[2:8] {
		if r != 0 {
			return fmt.Errorf("recordset: marker reserved bytes % x: %w", b[2:8], ErrMalformed)
		}
	}
	return nil
}
