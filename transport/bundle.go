package transport

import (
	"encoding/binary"
	"fmt"
)

// TypeBundle is a frame of the record sets and heartbeats of a time
// interval, primary → secondary, sent only to a secondary whose Welcome
// announces FeatureBundles. Part of the wire format: never renumber.
const TypeBundle byte = 6

// Features a secondary announces in its Welcome. Part of the wire format:
// never renumber.
const (
	// FeatureBundles: the secondary takes TypeBundle frames, and an idle
	// subsystem may report its horizon by heartbeat instead of by an empty
	// record set.
	FeatureBundles uint64 = 1 << 0
	// FeatureAsksPrimary: the secondary takes a TypeFeatures frame as the
	// first after its Welcome and answers it with its Welcome again,
	// without this bit (see TypeFeatures).
	FeatureAsksPrimary uint64 = 1 << 1
	// FeatureZstd: the secondary takes record sets compressed with zstd
	// (see Compressor), wherever a frame carries a record set.
	FeatureZstd uint64 = 1 << 2
	// FeatureNamesRefusals: the secondary names the kind of a refusal the
	// primary acts on by what it is (Refusal.Kind): one it leaves unnamed
	// is of no such kind, whatever its words. A secondary from before
	// kinds named none, and its refusal of a stale record set is known by
	// its words.
	FeatureNamesRefusals uint64 = 1 << 3
)

// Heartbeat is an idle subsystem's report in a bundle: every update it
// stamps at or before Horizon is in its record sets numbered through Seq.
// It takes no sequence number of its own, so it is never resent: a lost
// one is overtaken by the next interval's. The secondary takes it only
// once it holds every record set through Seq in order, which is what an
// empty record set numbered Seq+1 with that horizon would say.
type Heartbeat struct {
	Subsystem uint16 // index in the Hello's Subsystems
	Seq       uint64
	Horizon   int64
}

// HeartbeatSize is the encoded length of a Heartbeat.
const HeartbeatSize = 2 + 8 + 8

// Bundle is the body of a TypeBundle frame.
type Bundle struct {
	Beats []Heartbeat
	Sets  [][]byte // encoded record sets, each checking itself (recordset.Decode)
}

// BundleOverhead is what a bundle frame of sets record sets and beats
// heartbeats adds to the record sets' encodings.
func BundleOverhead(sets, beats int) int {
	return frameOverhead + 4 + bundleHeaderSize(sets, beats)
}

func bundleHeaderSize(sets, beats int) int { return 2 + HeartbeatSize*beats + 4 + 4*sets }

// BeginBundle starts a bundle frame in dst: its type and header, for
// record sets of the given encoded sizes and the heartbeats. The caller
// appends the record sets' encodings in that order, then seals the frame
// (Seal). The body is
//
//	u32 header length H; then the H header bytes: u16 heartbeat count,
//	per heartbeat u16 subsystem index, u64 sequence number, i64 horizon;
//	u32 record set count, per record set its u32 encoded length;
//	then the record sets, concatenated.
//
// The frame's CRC covers the type, H and the header; each record set
// carries CRCs of its own, so its megabytes are not checksummed twice.
func BeginBundle(dst []byte, sizes []int, beats []Heartbeat) []byte {
	dst = append(dst, TypeBundle)
	dst = binary.BigEndian.AppendUint32(dst, uint32(bundleHeaderSize(len(sizes), len(beats))))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(beats)))
	for _, b := range beats {
		dst = binary.BigEndian.AppendUint16(dst, b.Subsystem)
		dst = binary.BigEndian.AppendUint64(dst, b.Seq)
		dst = binary.BigEndian.AppendUint64(dst, uint64(b.Horizon))
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(sizes)))
	for _, n := range sizes {
		dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	}
	return dst
}

// EncodeBundle returns the frame of a bundle.
func EncodeBundle(b Bundle) []byte {
	sizes := make([]int, len(b.Sets))
	total := 0
	for i, s := range b.Sets {
		sizes[i] = len(s)
		total += len(s)
	}
	f := BeginBundle(make([]byte, 0, BundleOverhead(len(sizes), len(b.Beats))+total), sizes, b.Beats)
	for _, s := range b.Sets {
		f = append(f, s...)
	}
	return Seal(f)
}

// bundleCovered is how much of a bundle frame (without its CRC) the CRC
// covers: the type, the header length and the header. A length that does
// not fit covers the whole frame, whose CRC then fails.
func bundleCovered(f []byte) int {
	if len(f) < 5 {
		return len(f)
	}
	h := uint64(binary.BigEndian.Uint32(f[1:5]))
	if h > uint64(len(f)-5) {
		return len(f)
	}
	return 5 + int(h)
}

// DecodeBundle parses a Bundle body. The record sets alias body.
func DecodeBundle(body []byte) (Bundle, error) {
	var b Bundle
	if len(body) < 4 {
		return b, fmt.Errorf("bundle of %d bytes: %w", len(body), ErrCorrupt)
	}
	h := uint64(binary.BigEndian.Uint32(body))
	if h > uint64(len(body)-4) {
		return b, fmt.Errorf("bundle header of %d bytes in a body of %d: %w", h, len(body), ErrCorrupt)
	}
	r := &reader{b: body[4 : 4+h]}
	rest := body[4+h:]
	k := int(r.u16())
	if r.need(k * HeartbeatSize) {
		b.Beats = make([]Heartbeat, k)
		for i := range b.Beats {
			b.Beats[i] = Heartbeat{Subsystem: r.u16(), Seq: r.u64(), Horizon: int64(r.u64())}
		}
	}
	n := int(r.u32())
	if r.need(4 * n) {
		b.Sets = make([][]byte, n)
		for i := range b.Sets {
			size := uint64(r.u32())
			if size == 0 || size > uint64(len(rest)) {
				return Bundle{}, fmt.Errorf("bundle record set %d of %d bytes, %d left: %w", i+1, size, len(rest), ErrCorrupt)
			}
			b.Sets[i], rest = rest[:size:size], rest[size:]
		}
	}
	if err := r.done(); err != nil {
		return Bundle{}, fmt.Errorf("bundle header: %w", err)
	}
	if len(rest) != 0 {
		return Bundle{}, fmt.Errorf("bundle with %d bytes past its record sets: %w", len(rest), ErrCorrupt)
	}
	for i, beat := range b.Beats {
		if beat.Horizon <= 0 {
			return Bundle{}, fmt.Errorf("bundle heartbeat %d with horizon %d: %w", i+1, beat.Horizon, ErrCorrupt)
		}
	}
	return b, nil
}

func (r *reader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}
