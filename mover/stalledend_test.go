package mover

import (
	"testing"
	"time"
)

// TestRunEndsMidSendToAStalledSecondary: the end of Run's context ends a
// send to a secondary that stopped reading at once, long before the
// silence time gives the link up (a primary's SIGTERM waits for Run).
func TestRunEndsMidSendToAStalledSecondary(t *testing.T) {
	const silence = 10 * time.Minute
	r := startStalled(t, silence, silence)
	// The record set of the 48 MiB written goes in one frame, more than
	// the sockets buffer: once its send has begun it waits for the
	// secondary for ever.
	waitFor(t, "the send of the 48 MiB record set", func() bool { return r.sending.Load() >= stalledBytes })
	r.stop(t)
}
