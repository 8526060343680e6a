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
package transport

import (
	"context"
	"errors"
)

// Conn is one connection between a primary and a secondary.
type Conn interface {
	// Send transmits one frame. The frame may be retained until Send returns only.
	Send(frame []byte) error
	// Recv returns the next frame. The caller owns it.
	Recv() ([]byte, error)
	// Close ends the connection; a blocked Recv returns an error.
	Close() error
	// Peer names the other end, for logs.
	Peer() string
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

// ErrFrameTooLarge is returned for a frame above the configured maximum.
var ErrFrameTooLarge = errors.New("transport: frame too large")
