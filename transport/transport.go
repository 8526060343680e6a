// Package transport is the link between the sites, over which step (e) of the
// method sends time-interval groups of record sets and the secondary returns
// acknowledgements.
//
// A Conn carries whole messages (frames). Two implementations exist: TCP, with
// length-prefixed frames and optional mutual TLS, and an in-memory pipe whose
// faults (drop, duplicate, reorder, delay, corrupt, disconnect) tests set, so
// that the mover and the secondary can be proven correct without a network.
//
// Every message carries its own CRC-32C, so a corrupted frame is detected and
// discarded by the receiver whatever carried it; lost frames are recovered by
// the sender's retransmission, never by the link.
//
// A primary may compress each record set it sends with zstd, where the
// secondary announces it takes them (FeatureZstd in its Welcome, as with
// bundles, so a peer of before keeps getting plain record sets). The link
// form of a compressed record set, the receiver's checks of its sizes
// before it decodes anything, and how it tells a plain set from a
// compressed one are described in compress.go, and pinned by
// testdata/recordset-zstd.hex.
//
// A secondary acknowledges a primary that says it reads them
// (PrimaryReadsIndexedAcks in its Features frame) with TypeIndexedAck,
// whose tables name each subsystem by its index in the Hello instead of by
// name; to any other primary, and from a secondary of before, the tables
// go by name (TypeAck). The frame is described in indexed.go and pinned by
// testdata/ack-indexed.hex.
package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"duplex/crc32c"
)

// Conn is one connection between a primary and a secondary.
type Conn interface {
	// Send transmits one frame. The frame may be retained until Send returns only.
	// It never waits for ever on a peer that stops reading: see SetSendTimeout.
	Send(frame []byte) error
	// SetSendTimeout bounds how long a Send may wait for the peer to take
	// its data. A peer that stops reading (its process stopped, its disk
	// hung) keeps TCP alive, every probe answered by a zero window: without
	// a bound, a frame larger than the sockets buffer would block its
	// sender for ever, and everything waiting on the sender with it. A Send
	// that waits longer fails with ErrStalled and closes the connection
	// (the frame went out in part, so the stream is out of step). Zero
	// means DefaultSendTimeout.
	SetSendTimeout(d time.Duration)
	// SetAnswered tells the send timeout how to see that the peer is
	// alive though it takes nothing: answered returns when it last sent
	// anything. A Send is then given up only once the peer has neither
	// taken anything nor answered for the send timeout. A secondary
	// waiting on a slow disk reads frames ahead only so far and then
	// nothing until the disk answers, while it says every second that it
	// is there: a send held by it is a busy peer, not a stalled one. Nil,
	// the default: a Send is judged by what the peer takes alone.
	SetAnswered(answered func() time.Time)
	// Recv returns the next frame. The caller owns it.
	Recv() ([]byte, error)
	// Close ends the connection; a blocked Recv returns an error.
	Close() error
	// Peer names the other end, for logs.
	Peer() string
}

// FrameBuffers is implemented by a Conn whose Recv can read each frame into
// a buffer the receiver lends (alloc returns a slice of length n whose
// contents need not be zero) instead of a new one, which the runtime zeroes
// before Recv overwrites it: a receiver that recycles the buffers of frames
// it is done with saves that pass over every byte received. The frame Recv
// returns is then the alloc's buffer, the caller's to recycle.
type FrameBuffers interface {
	SetFrameAlloc(alloc func(n int) []byte)
}

// FramePlacer is implemented by a Conn whose Recv can show the receiver
// the first PlaceHead bytes of a frame of PlaceMin bytes or more before it
// reads the rest, so that the receiver picks where in memory the frame
// lies: place returns a buffer of at least n bytes, whose contents need
// not be zero, and Recv reads the whole frame into its first n (the head
// included) and returns them. Frames place is not asked about are
// FrameBuffers'. The secondary places a frame so that the data of its
// first record set lies on page boundaries, where its volume's direct
// writes take it without a copy.
type FramePlacer interface {
	SetFramePlace(place func(head []byte, n int) []byte)
}

// PlaceMin is the shortest frame Recv shows to a FramePlacer's place, and
// PlaceHead how many of its first bytes: enough for a bundle's header and
// its first record set's, up to about 90 updates.
const (
	PlaceMin  = 1 << 20
	PlaceHead = 4 << 10
)

// FirstSetAt is where the first record set of a frame starts, from the
// frame's first bytes head (as a FramePlacer sees them), if head says: a
// record-set frame's, or a bundle's with at least one record set. Nothing
// in head is trusted: an answer only places the frame.
func FirstSetAt(head []byte) (int, bool) {
	if len(head) == 0 {
		return 0, false
	}
	switch head[0] {
	case TypeRecordSet:
		return 1, true
	case TypeBundle:
		if len(head) < 5 {
			return 0, false
		}
		h := uint64(binary.BigEndian.Uint32(head[1:5]))
		at := 5 + h
		// A bundle's header ends with its record set count and their
		// sizes: none, and the frame has no set.
		if h < 2+4 || at > uint64(len(head)) {
			return 0, false
		}
		beats := uint64(binary.BigEndian.Uint16(head[5:7]))
		countAt := 7 + beats*HeartbeatSize
		if countAt+4 > at || binary.BigEndian.Uint32(head[countAt:]) == 0 {
			return 0, false
		}
		return int(at), true
	}
	return 0, false
}

// FrameSums is implemented by a Conn whose Recv can checksum each frame
// piece by piece as it reads it (crc32c.Sums.Fill): s then holds the
// checksums of the frame Recv returned last, until the next Recv, and
// s.Next says how the next is read.
type FrameSums interface {
	SetFrameSums(s *crc32c.Sums)
}

// Dialer opens connections from the primary.
type Dialer interface {
	Dial(ctx context.Context) (Conn, error)
}

// Listener accepts connections at the secondary.
type Listener interface {
	Accept(ctx context.Context) (Conn, error)
	Close() error
	Addr() string
}

// ErrClosed is returned by operations on a closed connection or listener.
var ErrClosed = errors.New("transport: closed")

// ErrStalled is returned by a Send whose peer took nothing for the send
// timeout (and, where SetAnswered says, answered nothing for as long).
var ErrStalled = errors.New("transport: peer stopped taking data")

// DefaultSendTimeout bounds a Send on a connection whose send timeout was
// never set: long enough for any link that still carries data, short
// enough that a stalled peer holds nothing up for long.
const DefaultSendTimeout = 30 * time.Second

// ErrFrameTooLarge is returned for a frame above the configured maximum.
var ErrFrameTooLarge = errors.New("transport: frame too large")

// ErrPeerSpeaksTLS is returned by a plain connection that received the
// start of a TLS handshake: the other site has TLS set, this one not.
var ErrPeerSpeaksTLS = errors.New("transport: the peer speaks TLS, this end does not")

// tlsHandshakeRecord is the content type of a TLS handshake record, the
// first byte a TLS client sends.
const tlsHandshakeRecord = 22
