package recordset

// Kind says what an update does to its volume. Part of the wire format: never
// renumber.
type Kind uint8

const (
	KindWrite  Kind = 1 // Data holds Length bytes to write at Offset.
	KindZeroes Kind = 2 // Length bytes at Offset read back as zeroes; no data.
	KindTrim   Kind = 3 // Length bytes at Offset are discarded; no data.
	KindCopy   Kind = 4 // Initial-copy or resync data; like KindWrite.
	// KindMarker changes nothing on the volume: its Data (MarkerSize bytes,
	// see Marker) announces a change of the volume's pair state, ordered by
	// its timestamp with the updates around it. Only in format version 2.
	KindMarker Kind = 5
)

// HasData reports whether updates of this kind carry a payload.
func (k Kind) HasData() bool { return k == KindWrite || k == KindCopy || k == KindMarker }

func (k Kind) String() string {
	switch k {
	case KindWrite:
		return "write"
	case KindZeroes:
		return "zeroes"
	case KindTrim:
		return "trim"
	case KindCopy:
		return "copy"
	case KindMarker:
		return "marker"
	}
	return "unknown"
}

// Update is one timestamped change to one volume, as captured in a sidefile.
type Update struct {
	Volume    string // volume name, unique within the session
	Kind      Kind
	Offset    uint64
	Length    uint64 // bytes affected; equals len(Data) for kinds with data
	Timestamp int64  // from the primary site's common timer, nanoseconds
	Seq       uint64 // per-subsystem update sequence number
	Data      []byte

	// sum is the CRC-32C of Data when summed: Decode keeps it for large
	// updates, whose bytes it has just checked, so that Encode of a set
	// holding them (a journaled consistency group) checksums its payload
	// by combining, without reading the bytes again.
	sum    uint32
	summed bool
}

// RecordSet is what one subsystem contributed to one time-interval group.
type RecordSet struct {
	Session   string
	Subsystem string
	Seq       uint64 // record-set sequence number, contiguous per subsystem from 1
	Group     uint64 // time-interval group number
	ReadTime  int64  // wall clock when the data mover read the sidefile
	Horizon   int64  // no later update of this subsystem has Timestamp <= Horizon
	Updates   []Update
}
