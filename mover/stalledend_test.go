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
	m, cancel, done := r.m, r.cancel, r.done
	// Give the send time to fill the sockets buffers and block; whether
	// it has or not, Run must end promptly.
	time.Sleep(time.Second)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("Run did not return within 5s of its context's end while sending to a secondary that stopped reading (silence time %v, connected %v)",
			silence, m.Stats().Connected)
	}
}
