package transport

import "encoding/binary"

// TypeFeatures is a frame primary → secondary that says what the primary
// reads beyond what every primary did (PrimaryReadsInconsistent,
// PrimaryReadsIndexedAcks, PrimaryReadsWaited). Part of the wire format: never renumber.
//
// A primary sends it only as the first frame after a Welcome that announces
// FeatureAsksPrimary, and waits for the secondary's answer, its Welcome
// again, which now uses what the primary reads and no longer announces
// FeatureAsksPrimary; the primary goes on from that second Welcome, and
// skips a Welcome that still asks: a link that duplicates frames repeats
// the first. Until then the secondary sends only what every primary reads.
// It answers one Features frame, and only before a record set or heartbeat
// of the connection. The Hello has no room for this: every secondary refuses a
// Hello longer than it knows, whereas a secondary from before this frame
// never announces FeatureAsksPrimary, so it is never sent one, and a primary
// from before it ignores the unknown feature bit and never sends one. Each
// side of any pair of versions thus speaks only what the other reads, at the
// cost of one round trip at connect between two that know it.
const TypeFeatures byte = 7

// Features a primary announces in a TypeFeatures frame. Part of the wire
// format: never renumber.
const (
	// PrimaryReadsInconsistent: the primary reads the inconsistent section
	// of a Position (see EncodePosition), which a primary from before it
	// refuses as malformed.
	PrimaryReadsInconsistent uint64 = 1 << 0
	// PrimaryReadsIndexedAcks: the primary reads TypeIndexedAck, an Ack
	// whose tables name subsystems by their index in its Hello, which a
	// primary from before it ignores as a frame of an unknown type.
	PrimaryReadsIndexedAcks uint64 = 1 << 1
	// PrimaryReadsWaited: the primary reads the waited section of a
	// Position (see EncodePosition), which a primary from before it
	// refuses as malformed.
	PrimaryReadsWaited uint64 = 1 << 2
)

// EncodeFeatures returns a Features frame. Its body is the u64 feature bits.
func EncodeFeatures(features uint64) []byte {
	return Frame(TypeFeatures, binary.BigEndian.AppendUint64(nil, features))
}

// DecodeFeatures parses a Features body. Bits it does not know are the
// features of a newer primary, which a secondary does not use.
func DecodeFeatures(body []byte) (uint64, error) {
	r := &reader{b: body}
	f := r.u64()
	return f, r.done()
}
